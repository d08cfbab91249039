package fabric

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseUpstreams(t *testing.T) {
	got, err := ParseUpstreams("arbor://b1:7480, arbor://b2:7480,redis://u:pw@10.0.0.1:6379")
	if want := []string{"arbor://b1:7480", "arbor://b2:7480", "redis://u:pw@10.0.0.1:6379"}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("got %q, %v; want %q", got, err, want)
	}
	for _, c := range []struct{ in, says string }{
		{"arbor://b1:7480,,arbor://b2:7480", "upstream 2"},
		{"arbor://b1:7480,", "upstream 2"},
		{"arbor://b1:7480,http://b2:7480", "upstream 2 (http://b2:7480)"},
		{"arbor://b1:7480,arbor://b1:7480", "the same as upstream 1"},
		{"redis://a:1,redis://u:pw@a:1", "the same as upstream 1"},
		{"arbor://b1", "upstream 1"},
	} {
		_, err := ParseUpstreams(c.in)
		if !errors.Is(err, ErrBadUpstreams) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("ParseUpstreams(%q): %v, want ErrBadUpstreams saying %q", c.in, err, c.says)
		}
	}
}

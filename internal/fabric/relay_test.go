package fabric

import "testing"

func TestWithCredentials(t *testing.T) {
	for _, c := range []struct{ upstream, static, want string }{
		{"redis://10.0.0.1:6379", "redis://u:pw@127.0.0.1:6379", "redis://u:pw@10.0.0.1:6379"},
		{"redis://10.0.0.1:6379", "redis://:pw@127.0.0.1:6379", "redis://:pw@10.0.0.1:6379"},
		{"redis://10.0.0.1:6379", "redis://127.0.0.1:6379", "redis://10.0.0.1:6379"},
		{"redis://10.0.0.1:6379", "", "redis://10.0.0.1:6379"},
		{"redis://x:y@10.0.0.1:6379", "redis://u:pw@127.0.0.1:6379", "redis://x:y@10.0.0.1:6379"},
		{"arbor://10.0.0.2:7480", "redis://u:pw@127.0.0.1:6379", "arbor://10.0.0.2:7480"},
	} {
		if got := withCredentials(c.upstream, c.static); got != c.want {
			t.Errorf("withCredentials(%q, %q) = %q, want %q", c.upstream, c.static, got, c.want)
		}
	}
}

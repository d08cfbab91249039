package e2e

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/internal/redistest"
)

// TestWritableMasters checks the per-epoch count on made-up histories: a
// clean failover, a promoted node's writes just before its record is seen
// (one master), an old master that still takes writes in the new epoch
// and one that takes a write after the new master did (two).
func TestWritableMasters(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	op := func(node string, sentMs, ackMs int, epoch int64) Op {
		return Op{Seq: 1, Node: node, Sent: at(sentMs), Acked: at(ackMs), EpochBefore: epoch, EpochAfter: epoch}
	}
	epochs := []Epoch{{Epoch: 5, Master: "a", Seen: at(0)}, {Epoch: 9, Master: "b", Seen: at(500)}}
	for _, tc := range []struct {
		name string
		ops  []Op
		want map[int64][]string
	}{
		{"clean failover", []Op{op("a", 10, 20, 5), op("b", 510, 520, 9)},
			map[int64][]string{5: {"a"}, 9: {"b"}}},
		{"promoted before its record", []Op{op("a", 10, 20, 5), op("b", 400, 410, 5), op("b", 510, 520, 9)},
			map[int64][]string{5: {"a"}, 9: {"b"}}},
		{"old master writable in the new epoch", []Op{op("a", 10, 20, 5), op("b", 510, 520, 9), op("a", 600, 610, 9)},
			map[int64][]string{5: {"a"}, 9: {"a", "b"}}},
		{"old master writes after the new one", []Op{op("b", 400, 410, 5), op("a", 420, 430, 5), op("b", 510, 520, 9)},
			map[int64][]string{5: {"a", "b"}, 9: {"b"}}},
		{"epoch changed in flight: left out", []Op{op("a", 10, 20, 5), {Seq: 1, Node: "a", Sent: at(490), Acked: at(510), EpochBefore: 5, EpochAfter: 9}, op("b", 510, 520, 9)},
			map[int64][]string{5: {"a"}, 9: {"b"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := WritableMasters(tc.ops, epochs); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	s, most := FormatWritable(map[int64][]string{9: {"a", "b"}, 5: {"a"}})
	if s != "e5: a; e9: a+b" || most != 2 {
		t.Errorf("FormatWritable: %q, %d", s, most)
	}
}

// TestLost checks the writer's keys against a real Redis: a missing key
// and one holding another value are lost, probes are not checked.
func TestLost(t *testing.T) {
	s := redistest.Start(t)
	ctx := context.Background()
	c := s.Client()
	for _, kv := range [][2]string{{"ack:1", "1"}, {"ack:3", "7"}} {
		if err := c.Set(ctx, kv[0], kv[1], 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	ops := []Op{{Seq: 1, Node: "a"}, {Seq: 2, Node: "a"}, {Seq: 3, Node: "b"}, {Node: "a"}}
	lost, err := Lost(ctx, c, ops)
	if err != nil {
		t.Fatal(err)
	}
	if len(lost) != 2 || lost[0].Seq != 2 || lost[1].Seq != 3 {
		t.Errorf("lost %+v, want ack:2 and ack:3", lost)
	}
	if Writes(ops) != 3 {
		t.Errorf("Writes = %d, want 3", Writes(ops))
	}
}

// TestTable checks the markdown: one line per row, pipes escaped, the
// verdict and the not-built reason shown.
func TestTable(t *testing.T) {
	var b strings.Builder
	Table(&b, []Result{
		{Row: "kill", Fault: "a | b", Status: Pass, Writable: "1", Took: time.Second},
		{Row: "later", Status: NotBuilt, Notes: []string{"needs relay HA"}},
	}, 3*time.Second)
	out := b.String()
	for _, want := range []string{"| kill | - | a \\| b | PASS |", "| later | - | - | not built |", "needs relay HA", "1 of 2 rows pass (1 run)"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// TestHistoryEpochs: the history keeps each newer master record once, in
// order; a record of the same or an older epoch seen again adds nothing.
func TestHistoryEpochs(t *testing.T) {
	var h History
	if e := h.Current(); e != (Epoch{}) {
		t.Errorf("Current before any record: %+v", e)
	}
	t0 := time.Unix(1000, 0)
	h.see(5, "a", t0)
	h.see(5, "b", t0.Add(time.Second))
	h.see(4, "c", t0.Add(2*time.Second))
	h.see(9, "b", t0.Add(3*time.Second))
	want := []Epoch{{Epoch: 5, Master: "a", Seen: t0}, {Epoch: 9, Master: "b", Seen: t0.Add(3 * time.Second)}}
	if got := h.Epochs(); !reflect.DeepEqual(got, want) {
		t.Errorf("Epochs %+v, want %+v", got, want)
	}
	if got := h.Current(); got != want[1] {
		t.Errorf("Current %+v, want %+v", got, want[1])
	}
}

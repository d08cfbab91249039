package resp

import (
	"strings"
	"testing"
)

func TestTxScannerCommits(t *testing.T) {
	set := string(AppendCommand(nil, "SET", "k", "v"))
	multi := string(AppendCommand(nil, "multi"))
	exec := string(AppendCommand(nil, "EXEC"))
	stream := set + multi + set + set + exec + "\n" + set + string(AppendCommand(nil, "MULTI", "x")) + multi + set
	// Commit points: after the first SET, after EXEC, after "\n", after
	// the second SET, after the 2-argument MULTI (not a transaction).
	i := len(set)
	want := []int{i}
	i += len(multi) + 2*len(set) + len(exec)
	want = append(want, i, i+1)
	i++
	i += len(set)
	want = append(want, i)
	i += len(AppendCommand(nil, "MULTI", "x"))
	want = append(want, i)

	// Byte by byte, so every split of a name is seen.
	sc := NewTxScanner(StreamScanner{})
	var got []int
	for j := range len(stream) {
		n, last, _, err := sc.Feed([]byte(stream[j : j+1]))
		if err != nil || n != 1 {
			t.Fatalf("Feed at %d: n=%d err=%v", j, n, err)
		}
		if last == 1 {
			got = append(got, j+1)
		}
	}
	if !equalInts(got, want) {
		t.Errorf("commit points byte by byte: got %v, want %v", got, want)
	}
	if !sc.InTransaction() {
		t.Error("stream ends after MULTI: InTransaction() = false")
	}

	// In one piece: the last commit point.
	sc = NewTxScanner(StreamScanner{})
	_, last, _, err := sc.Feed([]byte(stream))
	if err != nil || last != want[len(want)-1] {
		t.Errorf("Feed whole: last=%d err=%v, want %d", last, err, want[len(want)-1])
	}
	// Nothing commits inside the open transaction.
	if _, last, _, _ := sc.Feed([]byte(set)); last != -1 {
		t.Errorf("SET inside MULTI: last=%d, want -1", last)
	}
	if _, last, _, _ := sc.Feed([]byte(strings.ToLower(exec))); last != len(exec) {
		t.Errorf("exec: last=%d, want %d", last, len(exec))
	}
}

func TestTxScannerGetAckAndErrors(t *testing.T) {
	sc := NewTxScanner(StreamScanner{})
	getack := AppendCommand(nil, "REPLCONF", "GETACK", "*")
	if _, last, ack, err := sc.Feed(getack); err != nil || !ack || last != len(getack) {
		t.Errorf("GETACK: last=%d ack=%v err=%v", last, ack, err)
	}
	if _, _, _, err := sc.Feed([]byte("x")); err == nil {
		t.Error("garbage: no error")
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

package resp

import (
	"slices"
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
	if !slices.Equal(got, want) {
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

// FuzzTxScanner: a TxScanner scans exactly as a StreamScanner does, and
// its commit points are command boundaries, none after an open MULTI.
func FuzzTxScanner(f *testing.F) {
	f.Add([]byte("*1\r\n$5\r\nMULTI\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*1\r\n$4\r\nexec\r\n\n"), 7)
	f.Add(AppendCommand(AppendCommand(nil, "multi"), "REPLCONF", "GETACK", "*"), 3)
	f.Fuzz(func(t *testing.T, data []byte, split int) {
		if split < 0 || split > len(data) {
			split = len(data) / 2
		}
		var plain StreamScanner
		tx := NewTxScanner(StreamScanner{})
		for _, p := range [][]byte{data[:split], data[split:]} {
			n1, lb, ack1, err1 := plain.Feed(p)
			n2, lc, ack2, err2 := tx.Feed(p)
			if n1 != n2 || ack1 != ack2 || (err1 == nil) != (err2 == nil) {
				t.Fatalf("StreamScanner n=%d ack=%v err=%v; TxScanner n=%d ack=%v err=%v", n1, ack1, err1, n2, ack2, err2)
			}
			if lc > lb || (lc >= 0 && lc > n2) {
				t.Fatalf("commit point %d after the last boundary %d (n=%d)", lc, lb, n2)
			}
			if lc >= 0 && lc == lb && tx.InTransaction() && err2 == nil {
				// The last boundary opened or continued a transaction,
				// so it cannot be a commit point.
				t.Fatalf("commit point %d at a boundary inside MULTI", lc)
			}
			if err1 != nil {
				return
			}
		}
	})
}

package resp

// txWords are the one-argument commands that open and close a transaction
// in a replication stream, upper case, indexed by txWord. Their lengths
// differ, so a command's first bulk length picks the only candidate.
var txWords = [...]string{txNone: "", txMulti: "MULTI", txExec: "EXEC", txDiscard: "DISCARD"}

// txWord is which of txWords the current command may still be.
type txWord uint8

const (
	txNone txWord = iota
	txMulti
	txExec
	txDiscard
)

// txState is what a TxScanner adds to a StreamScanner. Its methods are
// called by StreamScanner.feed at the points of the grammar they are named
// after, and do nothing on a nil *txState (plain Feed).
type txState struct {
	multi bool   // inside MULTI…EXEC
	word  txWord // what the current one-argument command may still be
	last  int    // index just after the last commit point in this feed, or -1
}

// start is called when a command of argc arguments begins.
func (t *txState) start(argc int64) {
	if t == nil {
		return
	}
	t.word = txNone
	if argc == 1 {
		t.word = txMulti // a placeholder until name sees the length
	}
}

// name is called with the length of the command name (argument 0).
func (t *txState) name(n int64) {
	if t == nil || t.word == txNone {
		return
	}
	t.word = txNone
	for w := txMulti; w <= txDiscard; w++ {
		if int64(len(txWords[w])) == n {
			t.word = w
		}
	}
}

// payload is called with a piece of the command name, left bytes of which
// were still to come before it.
func (t *txState) payload(p []byte, left int64) {
	if t == nil || t.word == txNone {
		return
	}
	want := txWords[t.word]
	off := len(want) - int(left)
	if !equalFoldUpper(p, want[off:off+len(p)]) {
		t.word = txNone
	}
}

// end is called when a command ends just before p[i].
func (t *txState) end(i int) {
	if t == nil {
		return
	}
	switch t.word {
	case txMulti:
		t.multi = true
	case txExec, txDiscard:
		t.multi = false
	}
	t.word = txNone
	t.boundary(i)
}

// boundary is called at a command boundary just before p[i].
func (t *txState) boundary(i int) {
	if t != nil && !t.multi {
		t.last = i
	}
}

// TxScanner tracks the points of a replication stream where a Redis replica
// advances its offset: command boundaries outside MULTI…EXEC. A replica
// applies a transaction only at its EXEC and, when the link to its master
// breaks, drops a partial command or transaction and asks again from its
// start; so after a failover the promoted replica's history ends at such a
// point. A relay that stores, acks and serves only up to these points keeps
// the same history as the replicas it feeds.
//
// A TxScanner is not persisted: it lives for one upstream session, whose
// stream starts at a point the relay stored, so outside any transaction.
// It is not safe for concurrent use.
type TxScanner struct {
	sc StreamScanner
	tx txState
}

// NewTxScanner returns a TxScanner that continues from sc, outside any
// transaction. sc is copied.
func NewTxScanner(sc StreamScanner) *TxScanner {
	return &TxScanner{sc: sc}
}

// Feed scans p, which continues the stream. lastCommit is the index in p
// just after the last command boundary outside a transaction within p, or
// -1 if there is none; being a command boundary, it is where the zero
// StreamScanner stands. n, getAck and err are as for StreamScanner.Feed;
// after an error the TxScanner is unusable.
func (t *TxScanner) Feed(p []byte) (n, lastCommit int, getAck bool, err error) {
	t.tx.last = -1
	n, _, getAck, err = t.sc.feed(p, &t.tx)
	return n, t.tx.last, getAck, err
}

// InTransaction reports whether the bytes fed so far end inside MULTI…EXEC.
func (t *TxScanner) InTransaction() bool { return t.tx.multi }

// Scanner returns a copy of the stream scanner's state after the bytes fed
// so far.
func (t *TxScanner) Scanner() StreamScanner { return t.sc }

package store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/arbor-fabric/arbor/internal/rdb"
)

// readIncoming reads r until it returns an error, in a goroutine, and
// returns a channel with what it read and that error.
func readIncoming(r *IncomingReader) <-chan incomingResult {
	out := make(chan incomingResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var got []byte
		buf := make([]byte, 3)
		for {
			n, err := r.Read(ctx, buf)
			got = append(got, buf[:n]...)
			if err != nil {
				out <- incomingResult{got, err}
				return
			}
		}
	}()
	return out
}

type incomingResult struct {
	data []byte
	err  error
}

// TestIncomingFollowedToInstall: readers that open an incoming RDB before
// and in the middle of its transfer read every byte as it is written, and
// learn that it is complete (io.EOF) only once ResetTo installed it.
func TestIncomingFollowedToInstall(t *testing.T) {
	s := mustOpen(t, testOptions(t, t.TempDir()))
	w, err := s.NewSnapshotWriter()
	if err != nil {
		t.Fatal(err)
	}
	in, err := s.PublishIncoming(w, IncomingHeader{Replid: testReplid, Offset: 7, Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	if s.Incoming() != in {
		t.Fatal("Incoming does not return the published RDB")
	}
	early, err := in.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	first := readIncoming(early)
	payload := rdb.Minimal(10)
	half := len(payload) / 2
	if _, err := w.Write(payload[:half]); err != nil {
		t.Fatal(err)
	}
	late, err := in.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	second := readIncoming(late)
	if _, err := w.Write(payload[half:]); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-first:
		t.Fatalf("a reader finished before the RDB was installed: %v", r.err)
	case <-time.After(50 * time.Millisecond):
	}
	snap, err := s.ResetTo(w, testReplid, 7)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range []<-chan incomingResult{first, second} {
		r := <-ch
		if !errors.Is(r.err, io.EOF) || !bytes.Equal(r.data, payload) {
			t.Fatalf("reader ended with %v after %d bytes, want io.EOF after the %d of the RDB", r.err, len(r.data), len(payload))
		}
	}
	got, gen := early.Installed()
	if got != snap || gen != s.State().Generation {
		t.Fatalf("Installed() = %+v gen %d, want %+v gen %d", got, gen, snap, s.State().Generation)
	}
	if s.Incoming() != nil {
		t.Fatal("the installed RDB is still published as incoming")
	}
	if _, err := in.Open(); !errors.Is(err, ErrIncomingAborted) {
		t.Fatalf("Open after install: %v, want ErrIncomingAborted", err)
	}
}

// TestIncomingRefusedEndsReaders: an incoming RDB that fails its check at
// ResetTo, or is abandoned, ends its readers with ErrIncomingAborted, never
// io.EOF, and the store keeps what it had.
func TestIncomingRefusedEndsReaders(t *testing.T) {
	for _, how := range []string{"refused", "aborted", "suspended"} {
		t.Run(how, func(t *testing.T) {
			s := mustOpen(t, testOptions(t, t.TempDir()))
			w, err := s.NewSnapshotWriter()
			if err != nil {
				t.Fatal(err)
			}
			in, err := s.PublishIncoming(w, IncomingHeader{Replid: testReplid, Size: -1})
			if err != nil {
				t.Fatal(err)
			}
			r, err := in.Open()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			res := readIncoming(r)
			bad := rdb.Minimal(10)
			bad[len(bad)-1] ^= 1 // a wrong CRC64
			if _, err := w.Write(bad); err != nil {
				t.Fatal(err)
			}
			switch how {
			case "refused":
				if _, err := s.ResetTo(w, testReplid, 0); err == nil {
					t.Fatal("ResetTo installed an RDB with a wrong checksum")
				}
			case "aborted":
				w.Abort()
			case "suspended":
				if _, err := w.Suspend(); err != nil {
					t.Fatal(err)
				}
			}
			got := <-res
			if !errors.Is(got.err, ErrIncomingAborted) {
				t.Fatalf("reader ended with %v, want ErrIncomingAborted", got.err)
			}
			if s.Incoming() != nil || s.State().HasData() {
				t.Fatal("the store kept the refused RDB")
			}
		})
	}
}

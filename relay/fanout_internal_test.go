package relay

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/arbor-fabric/arbor/internal/rdb"
	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/klauspost/compress/zstd"
)

// fakeChild is the receiving end of one child link, decoding every frame
// as a child relay does (resets included) and checking it continues the
// stream. It is a stand-in for the gRPC stream in a unit test of the
// feeder and the fanout; the tree tests run the real thing.
type fakeChild struct {
	grpc.ServerStream
	ctx   context.Context
	delay time.Duration // per frame, to make a slow child

	mu       sync.Mutex
	dec      *decoders
	got      bytes.Buffer
	end      int64
	resets   int
	switches []string // "replid@offset", in the order received
	err      error
}

func (c *fakeChild) Context() context.Context { return c.ctx }

func (c *fakeChild) Recv() (*arborv1.SyncRequest, error) {
	<-c.ctx.Done()
	return nil, c.ctx.Err()
}

func (c *fakeChild) Send(m *arborv1.SyncResponse) error {
	if sw := m.GetReplidSwitch(); sw != nil {
		c.mu.Lock()
		defer c.mu.Unlock()
		if sw.GetAtOffset() != c.end && c.err == nil {
			c.err = fmt.Errorf("replid switch at %d, child holds %d", sw.GetAtOffset(), c.end)
		}
		c.switches = append(c.switches, fmt.Sprintf("%s@%d", sw.GetNewReplid(), sw.GetAtOffset()))
		return c.err
	}
	s := m.GetStream()
	if s == nil {
		return nil
	}
	time.Sleep(c.delay)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	if s.GetStartOffset() != c.end {
		c.err = fmt.Errorf("frame starts at %d, child holds %d", s.GetStartOffset(), c.end)
		return c.err
	}
	if s.GetCompressionReset() {
		c.resets++
		if err := c.dec.reset(s.GetCompression()); err != nil {
			c.err = err
			return err
		}
	}
	data, err := c.dec.decode(s.GetData(), s.GetCompression(), s.GetRawLen())
	if err != nil {
		c.err = fmt.Errorf("frame at %d: %w", s.GetStartOffset(), err)
		return c.err
	}
	c.got.Write(data)
	c.end += int64(len(data))
	return nil
}

func (c *fakeChild) state() (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.end, c.err
}

// storeTestRelay opens a relay's store in a temporary directory (the
// relay is not run) with an empty snapshot at offset 0; mod adjusts the
// configuration first (frames of 2 KiB unless it says otherwise).
func storeTestRelay(t testing.TB, mod ...func(*Config)) *Relay {
	t.Helper()
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.ID, cfg.DataDir, cfg.Upstream, cfg.RedisAddr = "relay-t", filepath.Join(dir, "data"), "redis://127.0.0.1:1", "127.0.0.1:0"
	cfg.BatchBytes = 2 << 10
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, m := range mod {
		m(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.ln.Close()
		r.store.Close()
	})
	w, err := r.store.NewSnapshotWriter()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(rdb.Minimal(10)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.store.ResetTo(w, "0123456789abcdef0123456789abcdef01234567", 0); err != nil {
		t.Fatal(err)
	}
	return r
}

// startFanout opens a test relay whose zstd fanout keeps queueBytes of
// frames and lets a member that fell behind join again after rejoinDelay,
// and streams its store to one fake child per delay (startLinks). cancel
// ends the links; waitLinks calls it.
func startFanout(t *testing.T, queueBytes int, rejoinDelay time.Duration, delays ...time.Duration) (*Relay, *fanout, []*testLink, context.CancelFunc) {
	t.Helper()
	r := storeTestRelay(t)
	fo := r.fanoutFor(arborv1.Compression_COMPRESSION_ZSTD)
	fo.queueBytes, fo.rejoinDelay = queueBytes, rejoinDelay
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return r, fo, startLinks(t, ctx, r, delays...), cancel
}

// startLinks streams r's store to one fake child per delay, each over its
// own feeder of zstd frames that may share r's fanout.
func startLinks(t *testing.T, ctx context.Context, r *Relay, delays ...time.Duration) []*testLink {
	t.Helper()
	var links []*testLink
	for i, delay := range delays {
		ch := &fakeChild{ctx: ctx, delay: delay, dec: &decoders{}}
		t.Cleanup(ch.dec.close)
		c := &childLink{id: fmt.Sprintf("child-%d", i), compression: arborv1.Compression_COMPRESSION_ZSTD, shares: true, cancel: func(error) {}}
		enc, err := newFrameEncoder(c.compression, zstd.SpeedDefault)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(enc.close)
		f := &feeder{r: r, c: c, srv: ch, enc: enc, log: r.log}
		reader, err := r.store.NewReader(r.store.State().Generation, 0)
		if err != nil {
			t.Fatal(err)
		}
		l := &testLink{child: ch, c: c, done: make(chan error, 1)}
		links = append(links, l)
		go func() {
			err := f.stream(ctx, reader)
			l.left = f.leftShared
			l.done <- err
		}()
	}
	return links
}

type testLink struct {
	child *fakeChild
	c     *childLink
	left  int
	done  chan error
}

// waitLinks waits until every child holds end bytes (failing on a child's
// error), then ends the links.
func waitLinks(t *testing.T, cancel context.CancelFunc, links []*testLink, end int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, l := range links {
		for {
			got, err := l.child.state()
			if err != nil {
				t.Fatalf("%s: %v", l.c.id, err)
			}
			if got == end {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s holds %d of %d bytes", l.c.id, got, end)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	cancel()
	for _, l := range links {
		if err := <-l.done; err != context.Canceled {
			t.Errorf("%s: stream ended with %v, want context.Canceled", l.c.id, err)
		}
	}
}

// setCommands returns n SET commands as a master streams them.
func setCommands(from, n int) []byte {
	var b []byte
	for i := from; i < from+n; i++ {
		k := fmt.Sprintf("user:%d", i%5000)
		v := fmt.Sprintf(`{"id":%d,"name":"user %d","tags":["a","b"],"visits":%d}`, i%5000, i%5000, i)
		b = fmt.Appendf(b, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(k), k, len(v), v)
	}
	return b
}

// TestFanoutSharesAndSlowChildGoesAlone: three zstd links stream a live
// store; the two fast ones send frames compressed once for both, the slow
// one falls behind the fanout's queue and goes on with its own frames (and
// may join again); every child decodes exactly the stored stream, resets
// and all.
func TestFanoutSharesAndSlowChildGoesAlone(t *testing.T) {
	r, fo, links, cancel := startFanout(t, 8<<10, 20*time.Millisecond, 0, 0, 2*time.Millisecond)

	var all []byte
	for i := 0; i < 400; i++ {
		p := setCommands(i*50, 50)
		if _, err := r.store.Append(p); err != nil {
			t.Fatal(err)
		}
		all = append(all, p...)
		if i%20 == 0 {
			time.Sleep(time.Millisecond) // let the fast links catch up and join
		}
	}
	waitLinks(t, cancel, links, int64(len(all)))
	for _, l := range links {
		if !bytes.Equal(l.child.got.Bytes(), all) {
			t.Errorf("%s: decoded stream differs from the stored one", l.c.id)
		}
		t.Logf("%s: raw %d, shared %d, wire %d, resets %d, went alone %d times", l.c.id,
			l.c.rawBytes.Load(), l.c.sharedRawBytes.Load(), l.c.wireBytes.Load(), l.child.resets, l.left)
	}
	for _, l := range links[:2] {
		if l.c.sharedRawBytes.Load() == 0 {
			t.Errorf("%s (fast): no bytes sent from shared frames", l.c.id)
		}
	}
	if slow := links[2]; slow.left == 0 {
		t.Errorf("slow child never fell behind the shared frames (%d shared bytes)", slow.c.sharedRawBytes.Load())
	}
	fo.mu.Lock()
	defer fo.mu.Unlock()
	if fo.members != 0 || fo.reader != nil || len(fo.frames) != 0 {
		t.Errorf("fanout after every link ended: %d members, reader %v, %d frames queued; want none", fo.members, fo.reader != nil, len(fo.frames))
	}
}

// TestFanoutCarriesReplidSwitches: replication ID switches (failovers)
// land while links join, share and fall behind; every child gets every
// switch once, at its exact offset, in order, and the exact stream.
func TestFanoutCarriesReplidSwitches(t *testing.T) {
	r, _, links, cancel := startFanout(t, 16<<10, 5*time.Millisecond, 0, 0, time.Millisecond, 0)

	var all []byte
	var want []string
	for i := 0; i < 300; i++ {
		if i%30 == 29 {
			id := fmt.Sprintf("%040x", i)
			if err := r.store.SwitchReplid(id); err != nil {
				t.Fatal(err)
			}
			want = append(want, fmt.Sprintf("%s@%d", id, len(all)))
		}
		p := setCommands(i*20, 20)
		if _, err := r.store.Append(p); err != nil {
			t.Fatal(err)
		}
		all = append(all, p...)
		if i%10 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	waitLinks(t, cancel, links, int64(len(all)))
	for _, l := range links {
		if !bytes.Equal(l.child.got.Bytes(), all) {
			t.Errorf("%s: decoded stream differs from the stored one", l.c.id)
		}
		if got := fmt.Sprint(l.child.switches); got != fmt.Sprint(want) {
			t.Errorf("%s: switches\n got %s\nwant %s", l.c.id, got, fmt.Sprint(want))
		}
		t.Logf("%s: shared %d of %d bytes, resets %d, went alone %d times, %d of %d switches", l.c.id,
			l.c.sharedRawBytes.Load(), l.c.rawBytes.Load(), l.child.resets, l.left, len(l.child.switches), len(want))
	}
}

// TestFanoutSteadyStreamSharedByBoth: two links that keep up with a steady
// stream of small writes (a master at a low write rate) both send the
// fanout's frames, so each frame is compressed once for both. The member
// that makes a frame waits inside it for the store's next bytes nearly all
// the time, and a link that could join only between two frames kept
// compressing its own frames (each frame twice on the relay). On one core
// (a relay pinned to a CPU: GOMAXPROCS 1) the other link only ever ran
// while the maker waited, so it never joined.
func TestFanoutSteadyStreamSharedByBoth(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	r, _, links, cancel := startFanout(t, fanoutQueueBytes, fanoutRejoinDelay, 0, 0)

	var all []byte
	for i := 0; i < 600; i++ {
		p := setCommands(i*2, 2)
		if _, err := r.store.Append(p); err != nil {
			t.Fatal(err)
		}
		all = append(all, p...)
		time.Sleep(500 * time.Microsecond)
	}
	waitLinks(t, cancel, links, int64(len(all)))
	for _, l := range links {
		if !bytes.Equal(l.child.got.Bytes(), all) {
			t.Errorf("%s: decoded stream differs from the stored one", l.c.id)
		}
		shared, raw := l.c.sharedRawBytes.Load(), l.c.rawBytes.Load()
		t.Logf("%s: shared %d of %d bytes, resets %d, went alone %d times", l.c.id, shared, raw, l.child.resets, l.left)
		// Both links start alone; joining takes a frame or two, not most
		// of the stream.
		if shared < raw*3/4 {
			t.Errorf("%s: %d of %d bytes from shared frames, want at least 3/4", l.c.id, shared, raw)
		}
	}
}

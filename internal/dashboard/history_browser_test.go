package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/arbor-fabric/arbor/internal/etcdtest"
	"github.com/arbor-fabric/arbor/internal/redistest"
	arborv1 "github.com/arbor-fabric/arbor/proto/arbor/v1"
	"github.com/arbor-fabric/arbor/topology"
)

// getJSON decodes url's JSON answer into v.
func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// regexpETA matches a full sync as the page lists it.
var regexpETA = regexp.MustCompile(`^ra → rb: [0-9.]+ MiB sent of 200\.0 MiB \([0-9]+%\) · [0-9.]+ MiB/s · ETA [0-9.]+ (s|ms|min)$`)

// TestLagHistoryAndSyncETAInBrowser: relay ra serves a full sync to relay
// rb (its status, as a relay publishes it, says 4 MiB more every 250 ms of
// a 200 MiB snapshot) while site B's lag grows. /api/view gives the sync a
// rate and an ETA, and /api/lag-history the site's lag history; a page
// opened afterwards charts that history at its first render (not one
// point) and lists the sync with its ETA.
func TestLagHistoryAndSyncETAInBrowser(t *testing.T) {
	bctx := browser(t)
	etcd := etcdtest.Start(t, 1)
	f := &testFabric{cli: etcd.Client(t), cluster: "eta"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	top, err := topology.ParseYAML([]byte(`master: m
sites: {A: {}, B: {}}
relays:
  ra: {site: A, grpc_addr: "127.0.0.1:7001", redis_addr: "127.0.0.1:7002", upstream: master}
  rb: {site: B, grpc_addr: "127.0.0.1:7003", redis_addr: "127.0.0.1:7004", upstream: ra}
nodes:
  m: {site: A, redis_addr: "127.0.0.1:7010", follow: ra}
  b1: {site: B, redis_addr: "127.0.0.1:7011", follow: rb}
`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := topology.Apply(ctx, f.cli, f.cluster, top); err != nil {
		t.Fatal(err)
	}
	put := func(ctx context.Context, kind, id string, v any) error {
		b, err := topology.EncodeStatus(v)
		if err != nil {
			return err
		}
		_, err = f.cli.Put(ctx, topology.StatusKey(f.cluster, kind, id), string(b))
		return err
	}
	// The publisher: bounded in count, ends with the test.
	pctx, pcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { pcancel(); wg.Wait() }()
	wg.Go(func() {
		for i := range 400 {
			sent := uint64(i+1) * 4 << 20
			ra := &arborv1.RelayStatus{Id: "ra", Site: "A", Upstream: "master", LinkState: arborv1.LinkState_LINK_STATE_STREAMING,
				MasterOffset: 5000, StoredOffset: 5000, Snapshot: &arborv1.Snapshot{SizeBytes: 200 << 20},
				Children: []*arborv1.ChildStatus{{Id: "rb", Kind: arborv1.ChildKind_CHILD_KIND_RELAY, Site: "B",
					LagBytes: int64(1000 * (i + 1)), State: arborv1.LinkState_LINK_STATE_FULL_SYNC,
					Bytes: &arborv1.CompressionStats{RawBytes: sent, WireBytes: sent / 3}}}}
			rb := &arborv1.RelayStatus{Id: "rb", Site: "B", Upstream: "ra", LinkState: arborv1.LinkState_LINK_STATE_FULL_SYNC}
			if put(pctx, topology.KindRelay, "ra", ra) != nil || put(pctx, topology.KindRelay, "rb", rb) != nil {
				return // the test is over
			}
			select {
			case <-pctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	})
	url := serve(t, f)

	// The API: the sync with a rate and an ETA, and site B's history.
	const minPoints = 12
	var points int
	redistest.WaitFor(t, 60*time.Second, func() error {
		var v pageView
		if err := getJSON(ctx, url+"/api/view", &v); err != nil {
			return err
		}
		if len(v.FullSyncs) != 1 || v.FullSyncs[0].Child != "rb" || v.FullSyncs[0].ETAMs == nil || *v.FullSyncs[0].ETAMs <= 0 ||
			v.FullSyncs[0].RateBytesPerSec <= 0 || v.FullSyncs[0].Total != 200<<20 {
			return fmt.Errorf("full syncs %+v: want ra → rb with a rate and an ETA", v.FullSyncs)
		}
		var h struct {
			Sites map[string][]LagPoint `json:"sites"`
		}
		if err := getJSON(ctx, url+"/api/lag-history", &h); err != nil {
			return err
		}
		b := h.Sites["B"]
		if points = len(b); points < minPoints {
			return fmt.Errorf("site B's history has %d points, want %d", points, minPoints)
		}
		if b[len(b)-1].Bytes <= b[0].Bytes {
			return fmt.Errorf("site B's lag did not grow over its history: %v", b)
		}
		return nil
	})

	// A page opened now charts the history at its first render.
	if err := chromedp.Do(bctx, chromedp.Navigate(url+"/")); err != nil {
		t.Fatal(err)
	}
	var first string
	redistest.WaitFor(t, 30*time.Second, func() error {
		got, err := chromedp.Run(bctx, chromedp.Evaluate[string](`(() => {
			if (!document.body.dataset.revision) return "";
			const c = document.querySelector('tr[data-site="B"] svg.chart');
			return c ? c.dataset.points : "none";
		})()`))
		if err != nil {
			return err
		}
		if got == "" {
			return fmt.Errorf("not rendered yet")
		}
		if first == "" {
			first = got
		}
		return nil
	})
	if n, _ := strconv.Atoi(first); n < points {
		t.Errorf("site B's chart at the first render has %s points, want the %d the server kept", first, points)
	}
	redistest.WaitFor(t, 30*time.Second, func() error {
		li, err := chromedp.Run(bctx, chromedp.Evaluate[map[string]string](`(() => {
			const li = document.querySelector('#syncs li[data-sync="rb"]');
			return li ? {text: li.textContent, eta: li.dataset.etaMs, hidden: String(document.getElementById("syncs-panel").hidden)} : {};
		})()`))
		if err != nil {
			return err
		}
		eta, _ := strconv.Atoi(li["eta"])
		if li["hidden"] != "false" || eta <= 0 || !regexpETA.MatchString(li["text"]) {
			return fmt.Errorf("the sync as shown: %v", li)
		}
		t.Logf("shown: %s", li["text"])
		return nil
	})
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/arbor-fabric/arbor/internal/statusview"
)

// watchRedrawEvery is the least time between two redraws of --watch.
const watchRedrawEvery = 250 * time.Millisecond

func newStatusCmd() *cobra.Command {
	var asJSON, watch bool
	var history int
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the fabric as a tree: master, relays, nodes, lag, health, refused edits",
		Long: `Show the whole fabric of a cluster from etcd: the master, the relays under
it (with their site and upstream), the nodes under the relay (or node) they
follow, each with its role, offset, lag behind the master (bytes and time) and
health as its agent last published it, and the problems of a refused topology
edit (the components keep running on the last good topology meanwhile).

Above the tree, the election: the epoch, the elected master and since when,
whether its leader still holds the election, which relays follow which epoch
(STALE ones named, with why), the candidates ranked as the election would rank
them if the master failed now (rank and why each is or is not eligible), and
the last --history failovers with their steps' timings.

--json prints the same as one JSON object (one per line with --watch), for
scripts; --watch follows the fabric live, redrawing on every change.`,
		Example: `  arbor status --etcd 127.0.0.1:2379 --cluster seed
  arbor status --etcd 127.0.0.1:2379 --cluster seed --json | jq '.nodes[] | {id, role, lag_bytes}'`,
		Args: cobra.NoArgs,
	}
	ef := addEtcdFlags(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&watch, "watch", false, "follow live: redraw on every change until interrupted")
	cmd.Flags().IntVar(&history, "history", statusview.DefaultHistory, "how many of the newest failovers to show (0: all)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cli, err := ef.client()
		if err != nil {
			return err
		}
		defer cli.Close()
		out := cmd.OutOrStdout()
		show := func(ctx context.Context) error {
			v, err := statusview.ReadHistory(ctx, cli, ef.cluster, history)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(out).Encode(v)
			}
			if watch {
				fmt.Fprint(out, "\x1b[H\x1b[2J") // home, clear screen
			}
			v.Render(out)
			return nil
		}
		if !watch {
			return show(cmd.Context())
		}
		return watchFabric(cmd.Context(), cli, ef.cluster, show, cmd.ErrOrStderr())
	}
	return cmd
}

// watchFabric calls show now and after every change under the cluster's
// prefix (at most every watchRedrawEvery), until ctx ends. Errors of show
// go to errw and are retried.
func watchFabric(ctx context.Context, cli *clientv3.Client, cluster string, show func(context.Context) error, errw io.Writer) error {
	statusview.Watch(ctx, cli, cluster, statusview.WatchConfig{
		Every:   watchRedrawEvery,
		Show:    show,
		OnError: func(err error) { fmt.Fprintln(errw, "arbor status:", err) },
	})
	return nil
}

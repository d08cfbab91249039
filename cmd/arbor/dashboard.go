package main

import (
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/spf13/cobra"

	"github.com/arbor-fabric/arbor/internal/dashboard"
)

// dashboardTokenEnv holds the action token when --action-token is not given
// (an environment variable keeps it out of ps and shell history).
const dashboardTokenEnv = "ARBOR_DASHBOARD_TOKEN"

func newDashboardCmd() *cobra.Command {
	var listen, token string
	var history int
	var allowActions bool
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Serve a live web page of the fabric: tree, lag, sites' RPO, election, failovers, refused edits",
		Long: `Serve one web page that shows a cluster's fabric live, from the status the
components publish in etcd (what ` + "`arbor status`" + ` shows): the tree with sites as
groups and edges coloured and labelled by lag, per site the acked offset and
bytes at risk with a lag chart, full syncs in progress, the election and its
candidates, the failover history, refused topology edits.

The page, its script and style are in the binary (no internet needed). One
etcd watch feeds every open page through server-sent events, at most two
updates a second. For scripts: GET /api/view (the view as JSON, the same
object as ` + "`arbor status --json`" + `) and GET /api/events (that object as an
event "view" on every change).

The dashboard is read-only by default: anything but GET is refused. With
--allow-actions it offers one action, a switchover (what arbor switchover
does) to a chosen candidate, from the page (after a confirmation) or as
POST /api/switchover {"to": "<node>", "timeout_ms": 5000}; every action
request must carry "Authorization: Bearer <token>" with the action token
(--action-token or $` + dashboardTokenEnv + `; required with --allow-actions).
The token is a shared secret sent on every action: serve the dashboard
behind TLS or an authenticating proxy. It listens on loopback by default.`,
		Example: `  arbor dashboard --etcd 127.0.0.1:2379 --cluster seed --listen 127.0.0.1:8080
  ARBOR_DASHBOARD_TOKEN=$(openssl rand -hex 16) arbor dashboard --allow-actions --etcd 127.0.0.1:2379 --cluster seed`,
		Args: cobra.NoArgs,
	}
	ef := addEtcdFlags(cmd.Flags())
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8080", "host:port to serve the page on")
	cmd.Flags().IntVar(&history, "history", 20, "how many of the newest failovers to show (0: all)")
	cmd.Flags().BoolVar(&allowActions, "allow-actions", false, "offer the switchover action (POST /api/switchover); needs an action token")
	cmd.Flags().StringVar(&token, "action-token", "", "the shared secret action requests carry as a bearer token (default $"+dashboardTokenEnv+")")
	logLevel := cmd.Flags().String("log-level", "info", "log level: debug, info, warn or error")
	logFormat := cmd.Flags().String("log-format", "text", "log format: text or json")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		logger, err := newLogger(*logLevel, *logFormat)
		if err != nil {
			return err
		}
		if history < 0 {
			return fmt.Errorf("--history %d: must not be negative", history)
		}
		if token == "" {
			token = os.Getenv(dashboardTokenEnv)
		}
		if allowActions && token == "" {
			return errors.New("--allow-actions needs an action token: set --action-token or $" + dashboardTokenEnv +
				" (a long random secret; anyone holding it can move the master)")
		}
		cli, err := ef.client()
		if err != nil {
			return err
		}
		defer cli.Close()
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "arbor dashboard of cluster %s on http://%s/\n", ef.cluster, ln.Addr())
		if allowActions {
			fmt.Fprintln(cmd.OutOrStdout(), "actions allowed: POST /api/switchover with the action token")
		}
		s := dashboard.New(dashboard.Config{Etcd: cli, Cluster: ef.cluster, History: history, Logger: logger,
			AllowActions: allowActions, ActionToken: token})
		return s.Serve(cmd.Context(), ln)
	}
	return cmd
}

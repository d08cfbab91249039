package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/arbor-fabric/arbor/relay"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "arbor",
		Short: "Arbor carries one Redis master's data to many Redis servers across sites",
		Long: `Arbor is a Redis replication fabric. Relays pull a Redis master's RDB and
command stream once, keep it on disk and serve it to stock redis-server
replicas (REPLICAOF <relay>), keeping the master's replication ID and offsets
so replicas can move between relays and the master with a partial resync.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       relay.Version,
	}
	root.AddCommand(newRelayCmd(), newDemoCmd(), newBenchCmd(), newNodeCmd(), newStatusCmd(), newDashboardCmd(), newTopologyCmd(), newSwitchoverCmd(), newFailoverCmd(), newDeadManCmd())
	return root
}

// newLogger builds the process logger from --log-level and --log-format.
func newLogger(level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch strings.ToLower(format) {
	case "text", "":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("log-format %q: want text or json", format)
}

package main

import (
	"context"
	"log/slog"

	"github.com/arbor-fabric/arbor/internal/fabric"
	"github.com/arbor-fabric/arbor/relay"
)

// runRelayWithEtcd runs `arbor relay --etcd`: it connects to etcd as the
// flags say (waiting for it while it cannot be reached) and runs the relay
// under the control plane (fabric.Relay: upstream from the topology,
// followed live, moved off a failed parent, status on a lease).
func runRelayWithEtcd(ctx context.Context, cfg relay.Config, ha relayHA, ef *etcdFlags, log *slog.Logger) error {
	cli, err := ef.connect(ctx, log)
	if err != nil {
		return err
	}
	defer cli.Close()
	return fabric.Relay{Config: cfg, Etcd: cli, Cluster: ef.cluster, Logger: log, Silence: ha.moveAfter, Down: ha.moveAfterDown, HoldDown: ha.holdDown}.Run(ctx)
}

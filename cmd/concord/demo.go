package main

import (
	"context"
	"fmt"
	"io"

	"github.com/concord-hie/concord/internal/devoidc"
)

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, _, err := parseConfig("demo", "demo [flags]\n\nMigrates, seeds a small synthetic region (3 members, dozens of patients, labs) and serves.\nWith no S3 endpoint or OIDC issuer configured it starts embedded ones on loopback.", args, stderr, nil)
	if err != nil {
		return err
	}
	if err := migrate(ctx, cfg, io.Discard); err != nil {
		return err
	}
	m := NewMain(cfg, stdout, stderr)
	defer m.Close()
	region := demoRegion(cfg.DemoSeed)
	if cfg.OIDCIssuer == "" {
		m.demoUsers = region.users()
	}
	if err := m.Open(ctx); err != nil {
		return err
	}
	if err := m.Listen(); err != nil {
		return err
	}
	created, err := region.seed(ctx, m)
	if err != nil {
		return fmt.Errorf("seeding the demo region: %w", err)
	}
	region.banner(stdout, m, created)
	return m.Run(ctx)
}

var _ = devoidc.User{}

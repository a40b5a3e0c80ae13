package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/concord-hie/concord/internal/config"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, _, err := parseConfig("migrate", "migrate [flags]\n\nCreates the database if it is missing and applies every pending migration, each in its own transaction.", args, stderr, nil)
	if err != nil {
		return err
	}
	return migrate(ctx, cfg, stdout)
}

func migrate(ctx context.Context, cfg config.Config, stdout io.Writer) error {
	if err := db.EnsureDatabase(ctx, cfg.DatabaseURL); err != nil {
		return fmt.Errorf("CONCORD_DATABASE_URL: %s", errs.MessageOf(err))
	}
	pool, err := db.Open(ctx, cfg.DatabaseURL, db.Options{MaxConns: 2})
	if err != nil {
		return fmt.Errorf("CONCORD_DATABASE_URL: PostgreSQL does not answer: %v", errors.Unwrap(err))
	}
	defer pool.Close()
	applied, err := db.Migrate(ctx, pool)
	if err != nil {
		if m := errs.MessageOf(err); m != "" {
			return errors.New(m)
		}
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(stdout, "schema is up to date")
	}
	for _, v := range applied {
		fmt.Fprintf(stdout, "applied migration %04d\n", v)
	}
	return nil
}

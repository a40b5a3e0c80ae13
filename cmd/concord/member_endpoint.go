package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/notify"
)

// runMemberEndpoint registers the origins (scheme, host, port) at which a member may
// receive rest-hook notifications: a Subscription naming any other endpoint is refused.
// Registration is an operator action; CONCORD_NOTIFY_ALLOW decides whether a private
// address may be registered at all.
func runMemberEndpoint(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var member, urls string
	cfg, _, err := parseConfig("member endpoint", "member endpoint --member ID --url URL[,URL...]\n\nRegisters the rest-hook endpoint origins a member's Subscriptions may use (https; a\nnon-public address only when CONCORD_NOTIFY_ALLOW names it).", args, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&member, "member", "", "the member's ID (required; see concord member list)")
		fs.StringVar(&urls, "url", "", "endpoint URLs whose origin to register, comma-separated (required)")
	})
	if err != nil {
		return err
	}
	if member == "" || strings.TrimSpace(urls) == "" {
		fmt.Fprintln(stderr, "concord member endpoint: --member and --url are required")
		return errReported
	}
	pool, err := openAdminDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := directory.NewStore(pool).Member(ctx, member); err != nil {
		return fmt.Errorf("member %s: %s", member, errs.MessageOf(err))
	}
	ns := notify.NewStore(cfg.NotifyAllow)
	for _, u := range strings.Split(urls, ",") {
		if u = strings.TrimSpace(u); u == "" {
			continue
		}
		if err := ns.RegisterEndpoint(ctx, pool, member, u); err != nil {
			return fmt.Errorf("endpoint %q: %s", u, errs.MessageOf(err))
		}
		fmt.Fprintf(stdout, "registered notification endpoint %s for %s\n", u, member)
	}
	return nil
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// runMemberToken prints an access token for a demo member's client, for trying the FHIR
// API by hand: it signs the client_credentials assertion with the key `concord demo` wrote
// to DATA_DIR/demo-clients/MEMBER.json and asks the token endpoint (BASE_URL/token) for
// the scopes given. The token goes to stdout only; it lives at most CONCORD_TOKEN_TTL.
func runMemberToken(_ context.Context, args []string, stdout, stderr io.Writer) error {
	var member, scope string
	cfg, _, err := parseConfig("member token", "member token --member ID [--scope SCOPES]\n\nPrints an access token for a demo member's client (its key is in DATA_DIR/demo-clients),\nfor trying the FHIR API:\n\n  TOKEN=$(concord member token --member riverside-family-clinic)\n  curl -H \"Authorization: Bearer $TOKEN\" http://localhost:8080/fhir/Endpoint", args, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&member, "member", "", "the demo member's ID (a file name in DATA_DIR/demo-clients, without .json; required)")
		fs.StringVar(&scope, "scope", "system/*.rs", "space-separated SMART scopes to ask for")
	})
	if err != nil {
		return err
	}
	if member == "" || strings.ContainsAny(member, `/\`) {
		fmt.Fprintln(stderr, "concord member token: --member ID is required (see DATA_DIR/demo-clients)")
		return errReported
	}
	ts, err := newTokenSource(cfg.DataDir, member, cfg.BaseURL+"/token", scope)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("member %s: no demo client key in %s/demo-clients (run concord demo first)", member, cfg.DataDir)
	case err != nil:
		return fmt.Errorf("member %s: the demo client key file cannot be read: %w", member, err)
	}
	if err := ts.refresh(); err != nil {
		return fmt.Errorf("member %s: %w", member, err)
	}
	if ts.token == "" {
		return fmt.Errorf("member %s: the token endpoint answered without an access token", member)
	}
	fmt.Fprintln(stdout, ts.token)
	return nil
}

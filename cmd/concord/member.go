package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/internal/config"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
)

func runMember(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "hl7" {
		return runMemberHL7(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "endpoint" {
		return runMemberEndpoint(ctx, args[1:], stdout, stderr)
	}
	if len(args) == 0 || (args[0] != "add" && args[0] != "list") {
		fmt.Fprint(stderr, "usage: concord member add --name NAME --system OID --jwks FILE [--scope S] [--purpose P] [--part2]\n       concord member list\n       concord member hl7 --member ID [--facility F] [--app A] [--address CIDR] [--namespace NS]\n       concord member endpoint --member ID --url URL[,URL...]\n")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return flag.ErrHelp
		}
		return errReported
	}
	var name, system, jwksPath, scopes, purposes string
	var part2 bool
	cfg, _, err := parseConfig("member "+args[0], "member "+args[0]+" [flags]", args[1:], stderr, func(fs *flag.FlagSet) {
		if args[0] == "add" {
			fs.StringVar(&name, "name", "", "the member organization's name (required)")
			fs.StringVar(&system, "system", "", "its MRN assigning authority: an OID such as 2.16.840.1.113883.3.1 (required)")
			fs.StringVar(&jwksPath, "jwks", "", "JSON Web Key Set file with the client system's public keys (required)")
			fs.StringVar(&scopes, "scope", "system/*.cruds", "space-separated SMART scopes the client may be granted")
			fs.StringVar(&purposes, "purpose", "TREAT", "comma-separated purposes of use the client may assert")
			fs.BoolVar(&part2, "part2", false, "the member is a 42 CFR Part 2 program: every record it sends is labelled ETH, R, 42CFRPart2, NORDSCLCD")
		}
	})
	if err != nil {
		return err
	}
	pool, err := openAdminDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	dir := directory.NewStore(pool)
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if args[0] == "list" {
		ms, err := dir.Members(ctx)
		if err != nil {
			return err
		}
		cs, err := dir.Clients(ctx, "")
		if err != nil {
			return err
		}
		type client struct {
			ClientID string   `json:"client_id"`
			Scopes   []string `json:"scopes"`
			Purposes []string `json:"purposes"`
			Disabled bool     `json:"disabled,omitempty"`
		}
		type member struct {
			Organization string   `json:"organization"`
			Name         string   `json:"name"`
			System       string   `json:"system"`
			Part2        bool     `json:"part2_program"`
			Clients      []client `json:"clients"`
		}
		out := []member{}
		for _, m := range ms {
			mm := member{Organization: m.ID, Name: m.Name, System: m.System, Part2: m.Part2, Clients: []client{}}
			for _, c := range cs {
				if c.MemberID == m.ID {
					mm.Clients = append(mm.Clients, client{c.ID, c.Scopes, c.Purposes, c.Disabled})
				}
			}
			out = append(out, mm)
		}
		return enc.Encode(out)
	}
	if name == "" || system == "" || jwksPath == "" {
		return fmt.Errorf("member add needs --name, --system and --jwks")
	}
	jwks, err := os.ReadFile(jwksPath)
	if err != nil {
		return fmt.Errorf("--jwks: %v", err)
	}
	if _, err := directory.ParseJWKS(jwks); err != nil {
		return fmt.Errorf("--jwks: %s", errs.MessageOf(err))
	}
	m, err := dir.AddMember(ctx, name, system)
	if err != nil {
		return fmt.Errorf("%s", errs.MessageOf(err))
	}
	if part2 {
		if err := dir.SetPart2(ctx, m.ID, true); err != nil {
			return fmt.Errorf("%s", errs.MessageOf(err))
		}
		m.Part2 = true
	}
	var ps []string
	for _, p := range strings.Split(purposes, ",") {
		if p = strings.TrimSpace(p); p != "" {
			ps = append(ps, p)
		}
	}
	c, err := dir.AddClient(ctx, m.ID, jwks, strings.Fields(scopes), ps)
	if err != nil {
		return fmt.Errorf("%s", errs.MessageOf(err))
	}
	return enc.Encode(struct {
		Organization string `json:"organization"`
		System       string `json:"system"`
		Part2        bool   `json:"part2_program"`
		ClientID     string `json:"client_id"`
		TokenURL     string `json:"token_url"`
	}{m.ID, m.System, m.Part2, c.ID, cfg.BaseURL + "/token"})
}

// openAdminDB opens the small pool an operator command (member, member hl7, member
// endpoint) works through, and refuses a schema that is not current, with one-line errors.
func openAdminDB(ctx context.Context, cfg config.Config) (*pgxpool.Pool, error) {
	pool, err := db.Open(ctx, cfg.DatabaseURL, db.Options{MaxConns: 2})
	if err != nil {
		return nil, fmt.Errorf("CONCORD_DATABASE_URL: PostgreSQL does not answer: %v", errs.MessageOf(err))
	}
	if err := db.CheckSchema(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("%s", errs.MessageOf(err))
	}
	return pool, nil
}

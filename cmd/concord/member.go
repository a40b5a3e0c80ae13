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
	if len(args) > 0 && args[0] == "set" {
		return runMemberSet(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "token" {
		return runMemberToken(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "client" {
		return runMemberClient(ctx, args[1:], stdout, stderr)
	}
	if len(args) == 0 || (args[0] != "add" && args[0] != "list") {
		fmt.Fprint(stderr, memberUsage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return flag.ErrHelp
		}
		return errReported
	}
	var name, system, jwksPath, scopes, purposes, npi string
	var part2 bool
	cfg, _, err := parseConfig("member "+args[0], "member "+args[0]+" [flags]", args[1:], stderr, func(fs *flag.FlagSet) {
		if args[0] == "add" {
			fs.StringVar(&name, "name", "", "the member organization's name (required)")
			fs.StringVar(&system, "system", "", "its MRN assigning authority: an OID such as 2.16.840.1.113883.3.1 (required)")
			fs.StringVar(&jwksPath, "jwks", "", "JSON Web Key Set file with the client system's public keys (required)")
			fs.StringVar(&scopes, "scope", "system/*.cruds", "space-separated SMART scopes the client may be granted")
			fs.StringVar(&purposes, "purpose", "TREAT", "comma-separated purposes of use the client may assert")
			fs.BoolVar(&part2, "part2", false, "the member is a 42 CFR Part 2 program: every record it sends is labelled ETH, R, 42CFRPart2, NORDSCLCD")
			fs.StringVar(&npi, "npi", "", "the organization's NPI (10 digits, checked), listed as its Organization identifier")
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
		ls, err := dir.Listings(ctx, nil)
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
			Organization string              `json:"organization"`
			Name         string              `json:"name"`
			System       string              `json:"system"`
			NPI          string              `json:"npi,omitempty"`
			Part2        bool                `json:"part2_program"`
			Endpoints    []publishedEndpoint `json:"endpoints,omitempty"`
			Clients      []client            `json:"clients"`
		}
		out := []member{}
		for _, l := range ls {
			m := l.Member
			mm := member{Organization: m.ID, Name: m.Name, System: m.System, NPI: l.NPI, Part2: m.Part2, Clients: []client{}}
			for _, e := range directory.MemberEndpoints(directory.Listing{Member: m, Endpoints: l.Endpoints}) {
				mm.Endpoints = append(mm.Endpoints, newPublishedEndpoint(e))
			}
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
	if npi != "" {
		if npi, err = directory.NormalizeNPI(npi); err != nil {
			return fmt.Errorf("--npi: %s", errs.MessageOf(err))
		}
	}
	jwks, err := os.ReadFile(jwksPath)
	if err != nil {
		return fmt.Errorf("--jwks: %v", err)
	}
	if _, err := directory.ParseJWKS(jwks); err != nil {
		return fmt.Errorf("--jwks: %s", errs.MessageOf(err))
	}
	ps := splitList(purposes)
	// One transaction: a refused NPI or client leaves no half-registered member behind.
	var m directory.Member
	var c directory.Client
	err = db.InTx(ctx, pool, func(tx db.Querier) error {
		txDir := directory.NewStore(tx)
		var err error
		if m, err = txDir.AddMember(ctx, name, system); err != nil {
			return err
		}
		if npi != "" {
			if err := txDir.SetNPI(ctx, m.ID, npi); err != nil {
				return err
			}
		}
		if part2 {
			if err := txDir.SetPart2(ctx, m.ID, true); err != nil {
				return err
			}
			m.Part2 = true
		}
		c, err = txDir.AddClient(ctx, m.ID, jwks, strings.Fields(scopes), ps)
		return err
	})
	if err != nil {
		return fmt.Errorf("%s", errs.MessageOf(err))
	}
	return enc.Encode(struct {
		Organization string `json:"organization"`
		System       string `json:"system"`
		NPI          string `json:"npi,omitempty"`
		Part2        bool   `json:"part2_program"`
		ClientID     string `json:"client_id"`
		TokenURL     string `json:"token_url"`
	}{m.ID, m.System, npi, m.Part2, c.ID, cfg.BaseURL + "/token"})
}

const memberUsage = `usage: concord member add --name NAME --system OID --jwks FILE [--npi NPI] [--scope S] [--purpose P] [--part2]
       concord member set --member ID --npi NPI
       concord member list
       concord member hl7 --member ID [--facility F] [--app A] [--address CIDR] [--namespace NS]
       concord member endpoint --member ID --url URL[,URL...] [--remove]
       concord member endpoint --member ID --type fhir|mllp|direct --address ADDRESS [--payload P[,P...]] [--status S]
       concord member endpoint --member ID --type fhir|mllp|direct --address ADDRESS --remove
       concord member client add --member ID --jwks FILE [--scope S] [--purpose P]
       concord member client disable|enable|end-tokens --client ID
       concord member client keys --client ID --jwks FILE
       concord member token --member ID [--scope SCOPES]   (a demo member's access token, for trying the API)
`

// runMemberSet changes a registered member's directory entry: today its NPI (--npi ”
// removes it).
func runMemberSet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var member, npi string
	cfg, fs, err := parseConfig("member set", "member set --member ID --npi NPI\n\nSets a member's organizational NPI (--npi '' removes it): the directory lists it as the\nidentifier http://hl7.org/fhir/sid/us-npi of Organization/member-ID.", args, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&member, "member", "", "the member's ID (required; see concord member list)")
		fs.StringVar(&npi, "npi", "", "the organization's NPI (10 digits, checked); '' removes it")
	})
	if err != nil {
		return err
	}
	npiSet := false
	fs.Visit(func(f *flag.Flag) { npiSet = npiSet || f.Name == "npi" })
	if member == "" || !npiSet {
		fmt.Fprintln(stderr, "concord member set: --member and --npi are required")
		return errReported
	}
	if npi != "" {
		if npi, err = directory.NormalizeNPI(npi); err != nil {
			return fmt.Errorf("--npi: %s", errs.MessageOf(err))
		}
	}
	pool, err := openAdminDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := directory.NewStore(pool).SetNPI(ctx, member, npi); err != nil {
		return fmt.Errorf("member %s: %s", member, errs.MessageOf(err))
	}
	if npi == "" {
		fmt.Fprintf(stdout, "removed the NPI of %s\n", member)
		return nil
	}
	fmt.Fprintf(stdout, "set the NPI of %s to %s (Organization/%s)\n", member, npi, directory.OrganizationID(member))
	return nil
}

// openMemberDB is openAdminDB for a command about one member: the pool and its directory,
// once the member is known (a one-line error naming it otherwise). Close the pool.
func openMemberDB(ctx context.Context, cfg config.Config, member string) (*pgxpool.Pool, *directory.Store, error) {
	pool, err := openAdminDB(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	dir := directory.NewStore(pool)
	if _, err := dir.Member(ctx, member); err != nil {
		pool.Close()
		return nil, nil, fmt.Errorf("member %s: %s", member, errs.MessageOf(err))
	}
	return pool, dir, nil
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

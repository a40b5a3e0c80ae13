package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/internal/errs"
)

const memberClientSynopsis = `member client add --member ID --jwks FILE [--scope S] [--purpose P]
       concord member client disable|enable|end-tokens --client ID
       concord member client keys --client ID --jwks FILE

Manages a member's client systems (SMART Backend Services). Every change below is in force
from the client's next FHIR request: its access tokens name the registration they were
issued under, and every request re-reads it.
  add         registers another client system for the member, with its public keys
  disable     refuses the client new tokens and ends the ones it holds (a leaked key, a
              retired system); the registration and its history are kept
  enable      lets a disabled client ask for tokens again; tokens from before stay ended
  keys        replaces the client's public keys (a rotation, or a leaked key): tokens
              issued before are ended, assertions signed with the old keys are refused
  end-tokens  ends the tokens the client holds and changes nothing else (a leaked access
              token); the client can ask for a new one at once`

// runMemberClient manages client systems: add, disable, enable, keys and end-tokens (see
// memberClientSynopsis). Each prints one line naming the client and what changed, or an
// error naming the client; nothing is printed about keys beyond their kids.
func runMemberClient(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	verbs := map[string]bool{"add": true, "disable": true, "enable": true, "keys": true, "end-tokens": true}
	if len(args) == 0 || !verbs[args[0]] {
		fmt.Fprintf(stderr, "usage: concord %s\n", memberClientSynopsis)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return flag.ErrHelp
		}
		return errReported
	}
	verb := args[0]
	var member, client, jwksPath, scopes, purposes string
	cfg, _, err := parseConfig("member client "+verb, memberClientSynopsis, args[1:], stderr, func(fs *flag.FlagSet) {
		if verb == "add" {
			fs.StringVar(&member, "member", "", "the member's ID (required; see concord member list)")
			fs.StringVar(&scopes, "scope", "system/*.cruds", "space-separated SMART scopes the client may be granted")
			fs.StringVar(&purposes, "purpose", "TREAT", "comma-separated purposes of use the client may assert")
		} else {
			fs.StringVar(&client, "client", "", "the client's ID (required; see concord member list)")
		}
		if verb == "add" || verb == "keys" {
			fs.StringVar(&jwksPath, "jwks", "", "JSON Web Key Set file with the client system's public keys (required)")
		}
	})
	if err != nil {
		return err
	}
	if verb == "add" && (member == "" || jwksPath == "") {
		return fmt.Errorf("member client add needs --member and --jwks")
	}
	if verb != "add" && client == "" {
		return fmt.Errorf("member client %s needs --client", verb)
	}
	if verb == "keys" && jwksPath == "" {
		return fmt.Errorf("member client keys needs --jwks")
	}
	var jwks []byte
	if jwksPath != "" {
		if jwks, err = os.ReadFile(jwksPath); err != nil {
			return fmt.Errorf("--jwks: %v", err)
		}
		if _, err := directory.ParseJWKS(jwks); err != nil {
			return fmt.Errorf("--jwks: %s", errs.MessageOf(err))
		}
	}
	pool, err := openAdminDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	dir := directory.NewStore(pool)
	fail := func(err error) error { return fmt.Errorf("client %s: %s", client, errs.MessageOf(err)) }
	switch verb {
	case "add":
		if _, err := dir.Member(ctx, member); err != nil {
			return fmt.Errorf("member %s: %s", member, errs.MessageOf(err))
		}
		c, err := dir.AddClient(ctx, member, jwks, strings.Fields(scopes), splitList(purposes))
		if err != nil {
			return fmt.Errorf("member %s: %s", member, errs.MessageOf(err))
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Organization string   `json:"organization"`
			ClientID     string   `json:"client_id"`
			Scopes       []string `json:"scopes"`
			Purposes     []string `json:"purposes"`
			TokenURL     string   `json:"token_url"`
		}{member, c.ID, c.Scopes, c.Purposes, cfg.BaseURL + "/token"})
	case "disable", "enable":
		changed, err := dir.SetClientDisabled(ctx, client, verb == "disable")
		if err != nil {
			return fail(err)
		}
		switch {
		case !changed:
			fmt.Fprintf(stdout, "client %s was already %sd; nothing changed\n", client, verb)
		case verb == "disable":
			fmt.Fprintf(stdout, "disabled client %s: it gets no tokens, and the ones it holds are refused from its next request\n", client)
		default:
			fmt.Fprintf(stdout, "enabled client %s: it may ask for tokens again; tokens from before it was disabled stay refused\n", client)
		}
	case "keys":
		if err := dir.SetClientKeys(ctx, client, jwks); err != nil {
			return fail(err)
		}
		set, _ := directory.ParseJWKS(jwks)
		kids := make([]string, 0, len(set.Keys))
		for _, k := range set.Keys {
			kids = append(kids, k.KeyID)
		}
		fmt.Fprintf(stdout, "replaced the keys of client %s (now kid %s); tokens issued before are refused from their next request\n", client, strings.Join(kids, ", "))
	case "end-tokens":
		if err := dir.EndClientTokens(ctx, client); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "ended the access tokens of client %s; it may ask for new ones\n", client)
	}
	return nil
}

// splitList splits a comma-separated flag value into its non-empty, trimmed items.
func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

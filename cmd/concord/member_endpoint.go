package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/concord-hie/concord/directory"
	"github.com/concord-hie/concord/internal/config"
	"github.com/concord-hie/concord/internal/db"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/notify"
)

const memberEndpointSynopsis = `member endpoint --member ID --url URL[,URL...] [--remove]
       concord member endpoint --member ID --type fhir|mllp|direct --address ADDRESS [--payload P[,P...]] [--status S]
       concord member endpoint --member ID --type fhir|mllp|direct --address ADDRESS --remove

Without --type (or with --type rest-hook), registers the rest-hook endpoint origins a
member's Subscriptions may use (https; a non-public address only when
CONCORD_NOTIFY_ALLOW names it). With --remove, takes the origins of the URLs out: new
Subscriptions at them are refused, and nothing more is sent to existing ones, which go
to error at their next delivery. Removing an origin that is not registered fails.

With --type, publishes an endpoint of the member in the directory, listed as a FHIR
Endpoint (GET /fhir/Endpoint?organization=member-ID) and referenced from its Organization:
  fhir    its FHIR base (hl7-fhir-rest), an https URL: https://fhir.example.org/r4
  mllp    where it receives HL7 v2 (hl7v2-mllp): mllp://host:port
  direct  its Direct address (direct-project): mailto:records@direct.example.org
Registering the same type and address again changes its payload types and status.
--status off keeps an endpoint listed as off; --remove takes it out of the directory
(GET /fhir/Endpoint/ID answers 404), its removal recorded with the registration.`

// runMemberEndpoint registers a member's endpoints. Without --type: the origins (scheme,
// host, port) at which a member may receive rest-hook notifications, where a
// Subscription naming any other endpoint is refused; CONCORD_NOTIFY_ALLOW decides
// whether a private address may be registered at all; with --remove, the removal of such
// origins (notify.Store.RemoveEndpointOrigin). With --type fhir|mllp|direct: an endpoint
// the member publishes in the directory (directory.ParseEndpoint validates it), or with
// --remove the removal of one. Registration and removal are operator actions; removing
// what is not registered is an error, as it is for a published endpoint.
func runMemberEndpoint(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var member, urls string
	var pub endpointFlags
	cfg, _, err := parseConfig("member endpoint", memberEndpointSynopsis, args, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&member, "member", "", "the member's ID (required; see concord member list)")
		fs.StringVar(&urls, "url", "", "rest-hook: endpoint URLs whose origin to register, comma-separated")
		fs.StringVar(&pub.typ, "type", "rest-hook", "rest-hook, or the type of a published endpoint: fhir, mllp or direct")
		fs.StringVar(&pub.address, "address", "", "with --type fhir|mllp|direct: the endpoint's address")
		fs.StringVar(&pub.payloads, "payload", "", "with --type: payload types, comma-separated: any, none or system|code (default any)")
		fs.StringVar(&pub.status, "status", "", "with --type: active (default), suspended, error, off or test")
		fs.BoolVar(&pub.remove, "remove", false, "with --url: remove the rest-hook origins; with --type and --address: remove the published endpoint from the directory")
	})
	if err != nil {
		return err
	}
	if pub.typ != "rest-hook" {
		if urls != "" {
			fmt.Fprintln(stderr, "concord member endpoint: --url is for rest-hook endpoints; give a published endpoint's --address")
			return errReported
		}
		return publishEndpoint(ctx, cfg, member, pub, stdout, stderr)
	}
	if pub.address != "" || pub.payloads != "" || pub.status != "" {
		fmt.Fprintln(stderr, "concord member endpoint: --address, --payload and --status go with --type fhir|mllp|direct")
		return errReported
	}
	if member == "" || strings.TrimSpace(urls) == "" {
		fmt.Fprintln(stderr, "concord member endpoint: --member and --url are required")
		return errReported
	}
	pool, _, err := openMemberDB(ctx, cfg, member)
	if err != nil {
		return err
	}
	defer pool.Close()
	ns := notify.NewStore(cfg.NotifyAllow)
	var list []string
	for _, u := range strings.Split(urls, ",") {
		if u = strings.TrimSpace(u); u != "" {
			list = append(list, u)
		}
	}
	if pub.remove {
		// All or none, and errors name origins or positions, never a URL (it may carry a
		// receiver's secret).
		var removed []notify.Origin
		err := db.InTx(ctx, pool, func(tx db.Querier) (err error) {
			removed, err = ns.RemoveEndpointOrigins(ctx, tx, member, list)
			return err
		})
		if err != nil {
			return fmt.Errorf("nothing removed: %s", errs.MessageOf(err))
		}
		for _, o := range removed {
			fmt.Fprintf(stdout, "removed notification endpoint origin %s of %s: its Subscriptions are stopped (status error)\n", o, member)
		}
		return nil
	}
	for _, u := range list {
		if err := ns.RegisterEndpoint(ctx, pool, member, u); err != nil {
			return fmt.Errorf("endpoint %q: %s", u, errs.MessageOf(err))
		}
		fmt.Fprintf(stdout, "registered notification endpoint %s for %s\n", u, member)
	}
	return nil
}

// endpointFlags are the flags of a published endpoint.
type endpointFlags struct {
	typ, address, payloads, status string
	remove                         bool
}

// publishEndpoint is concord member endpoint --type fhir|mllp|direct: it validates the
// endpoint before opening the database, publishes it and prints its Endpoint id.
func publishEndpoint(ctx context.Context, cfg config.Config, member string, f endpointFlags, stdout, stderr io.Writer) error {
	if _, ok := directory.ConnectionTypes[f.typ]; !ok {
		fmt.Fprintln(stderr, "concord member endpoint: --type is rest-hook, fhir, mllp or direct")
		return errReported
	}
	if member == "" || strings.TrimSpace(f.address) == "" {
		fmt.Fprintln(stderr, "concord member endpoint: --member and --address are required with --type")
		return errReported
	}
	if f.remove {
		return removeEndpoint(ctx, cfg, member, f, stdout, stderr)
	}
	var ps []string
	for _, p := range strings.Split(f.payloads, ",") {
		if p = strings.TrimSpace(p); p != "" {
			ps = append(ps, p)
		}
	}
	e, err := directory.ParseEndpoint(f.typ, f.address, ps, f.status)
	if err != nil {
		return fmt.Errorf("endpoint %q: %s", f.address, errs.MessageOf(err))
	}
	pool, dir, err := openMemberDB(ctx, cfg, member)
	if err != nil {
		return err
	}
	defer pool.Close()
	if e, err = dir.SetEndpoint(ctx, member, e); err != nil {
		return fmt.Errorf("endpoint %q: %s", f.address, errs.MessageOf(err))
	}
	ep := directory.MemberEndpoints(directory.Listing{Member: directory.Member{ID: member}, Endpoints: []directory.PublishedEndpoint{e}})[0]
	fmt.Fprintf(stdout, "published %s endpoint %s for %s (%s): Endpoint/%s\n", e.ConnectionType, e.Address, member, e.Status, ep.ID)
	return nil
}

// removeEndpoint is concord member endpoint --type fhir|mllp|direct --address A --remove:
// it removes the published endpoint and prints the Endpoint id that is gone.
func removeEndpoint(ctx context.Context, cfg config.Config, member string, f endpointFlags, stdout, stderr io.Writer) error {
	if f.payloads != "" || f.status != "" {
		fmt.Fprintln(stderr, "concord member endpoint: --remove takes no --payload or --status")
		return errReported
	}
	pool, dir, err := openMemberDB(ctx, cfg, member)
	if err != nil {
		return err
	}
	defer pool.Close()
	e, err := dir.RemoveEndpoint(ctx, member, f.typ, f.address)
	if err != nil {
		return fmt.Errorf("endpoint %q: %s", f.address, errs.MessageOf(err))
	}
	ep := directory.MemberEndpoints(directory.Listing{Member: directory.Member{ID: member}, Endpoints: []directory.PublishedEndpoint{e}})[0]
	fmt.Fprintf(stdout, "removed %s endpoint %s of %s: Endpoint/%s is gone from the directory\n", e.ConnectionType, e.Address, member, ep.ID)
	return nil
}

// publishedEndpoint is a published endpoint as concord member list shows it.
type publishedEndpoint struct {
	ID             string   `json:"id"` // the Endpoint's id
	ConnectionType string   `json:"connection_type"`
	Address        string   `json:"address"`
	PayloadTypes   []string `json:"payload_types"`
	Status         string   `json:"status"`
}

func newPublishedEndpoint(e directory.Endpoint) publishedEndpoint {
	p := publishedEndpoint{ID: e.ID, ConnectionType: e.ConnectionType, Address: e.Address, Status: e.Status, PayloadTypes: []string{}}
	for _, pt := range e.PayloadTypes {
		p.PayloadTypes = append(p.PayloadTypes, pt.String())
	}
	return p
}

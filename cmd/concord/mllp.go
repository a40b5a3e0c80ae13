package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/concord-hie/concord/exchange"
	"github.com/concord-hie/concord/exchange/hl7v2"
	"github.com/concord-hie/concord/internal/errs"
)

// startMLLP starts the HL7 v2 MLLP listener on CONCORD_MLLP_ADDR with the exchange's
// intake (nothing when the address is empty). Connections are attributed to members by
// the directory's HL7 address allowlist (or client certificate), messages by their
// registered MSH-3/MSH-4. The returned function stops the listener: every connection
// finishes the message it is handling and sends its ACK first (10 s at most).
func (m *Main) startMLLP() (stop func(), err error) {
	if m.cfg.MLLPAddr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", m.cfg.MLLPAddr)
	if err != nil {
		return nil, fmt.Errorf("CONCORD_MLLP_ADDR: %v", err)
	}
	in := exchange.NewHL7Intake(m.exchange, exchange.HL7Options{Audit: m.audit})
	srv := &hl7v2.Server{Handler: in, Authenticate: in.Authenticate, Logger: m.log}
	if m.cfg.MLLPCertFile != "" {
		// Members connect with client certificates, verified against the configured CA;
		// the intake attributes the connection by the certificate's registered names.
		cert, err := tls.LoadX509KeyPair(m.cfg.MLLPCertFile, m.cfg.MLLPKeyFile)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("CONCORD_MLLP_TLS_CERT: %v", err)
		}
		pem, err := os.ReadFile(m.cfg.MLLPClientCAFile)
		pool := x509.NewCertPool()
		if err != nil || !pool.AppendCertsFromPEM(pem) {
			ln.Close()
			return nil, fmt.Errorf("CONCORD_MLLP_CLIENT_CA: no PEM certificates in %s", m.cfg.MLLPClientCAFile)
		}
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, hl7v2.ErrServerClosed) {
			m.log.Error("mllp listener stopped", "err", err.Error())
		}
	}()
	m.log.Info("concord mllp listening", "mllp", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}

// seedDemoHL7 registers every demo member as an HL7 v2 sender: MSH-4 may name it by its
// member ID (HD namespace) or its OID (HD universal ID), and connections from loopback are
// allowed. Loopback is shared by all demo members, so each message is attributed by its
// MSH-4 among them.
func (m *Main) seedDemoHL7(ctx context.Context, members []demoMember) error {
	for _, dm := range members {
		for _, fac := range []string{dm.ID, strings.TrimPrefix(dm.OID, "urn:oid:")} {
			if err := m.directory.AddHL7Sender(ctx, dm.ID, "", fac); err != nil {
				return fmt.Errorf("demo HL7 sender %s: %v", dm.ID, err)
			}
		}
		for _, p := range []string{"127.0.0.0/8", "::1/128"} {
			if err := m.directory.AddHL7Address(ctx, dm.ID, p); err != nil {
				return fmt.Errorf("demo HL7 address %s: %v", dm.ID, err)
			}
		}
	}
	return nil
}

// runMemberHL7 is `concord member hl7`: it registers how a member's HL7 v2 feed is
// recognized. Each flag may be given several times (comma-separated).
func runMemberHL7(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var member, facilities, app, addresses, certNames, namespaces string
	cfg, _, err := parseConfig("member hl7", "member hl7 --member ID [--facility MSH-4] [--app MSH-3] [--address CIDR] [--cert-name NAME] [--namespace CX-4.1]", args, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&member, "member", "", "the member's ID (required; see concord member list)")
		fs.StringVar(&facilities, "facility", "", "MSH-4 values its feeds send: HD namespace ID or OID, comma-separated")
		fs.StringVar(&app, "app", "", "MSH-3 that must accompany --facility (default: any application)")
		fs.StringVar(&addresses, "address", "", "source addresses or CIDR prefixes its MLLP connections come from, comma-separated")
		fs.StringVar(&certNames, "cert-name", "", "client-certificate CN or DNS SAN names that identify it over TLS, comma-separated")
		fs.StringVar(&namespaces, "namespace", "", "CX-4.1 namespace IDs sent without an OID that mean its MRN system, comma-separated")
	})
	if err != nil {
		return err
	}
	if member == "" {
		fmt.Fprintln(stderr, "concord member hl7: --member is required")
		return errReported
	}
	pool, dir, err := openMemberDB(ctx, cfg, member)
	if err != nil {
		return err
	}
	defer pool.Close()
	steps := []struct {
		list, what string
		add        func(string) error
	}{
		{facilities, "sender", func(v string) error { return dir.AddHL7Sender(ctx, member, app, v) }},
		{addresses, "address", func(v string) error { return dir.AddHL7Address(ctx, member, v) }},
		{certNames, "certificate name", func(v string) error { return dir.AddHL7CertName(ctx, member, v) }},
		{namespaces, "namespace", func(v string) error { return dir.AddHL7Namespace(ctx, member, v, "") }},
	}
	for _, st := range steps {
		for _, v := range strings.Split(st.list, ",") {
			if v = strings.TrimSpace(v); v == "" {
				continue
			}
			if err := st.add(v); err != nil {
				return fmt.Errorf("HL7 %s %q: %s", st.what, v, errs.MessageOf(err))
			}
			fmt.Fprintf(stdout, "registered HL7 %s %s for %s\n", st.what, v, member)
		}
	}
	return nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/concord-hie/concord/exchange"
	"github.com/concord-hie/concord/exchange/hl7v2"
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
	in := exchange.NewHL7Intake(m.exchange, exchange.HL7Options{})
	srv := &hl7v2.Server{Handler: in, Authenticate: in.Authenticate, Logger: m.log}
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

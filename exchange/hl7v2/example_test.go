package hl7v2_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/concord-hie/concord/exchange/hl7v2"
	"github.com/concord-hie/concord/internal/errs"
)

// intake shows the shape of the exchange's Handler: map, commit, and only then AA.
type intake struct {
	commit func(ctx context.Context, member string, key hl7v2.DedupeKey, m *hl7v2.Mapped) error
}

func (h intake) HandleHL7(ctx context.Context, c hl7v2.ConnInfo, msg *hl7v2.Message) hl7v2.Ack {
	mapped, err := hl7v2.Map(msg, hl7v2.MapOptions{})
	if err != nil {
		return hl7v2.AckFromError(err) // AE for content, AR for unsupported type/version
	}
	// The store checks the dedupe key, writes the resources and the key in one
	// transaction; a repeat returns the stored outcome. Unavailable becomes AR 207.
	if err := h.commit(ctx, c.Member, mapped.Key, mapped); err != nil {
		return hl7v2.AckFromError(err)
	}
	return hl7v2.Accept()
}

func Example() {
	seen := map[hl7v2.DedupeKey]bool{}
	h := intake{commit: func(_ context.Context, _ string, key hl7v2.DedupeKey, m *hl7v2.Mapped) error {
		if seen[key] {
			return nil // already stored: acknowledge again, create nothing
		}
		seen[key] = true
		return nil
	}}
	srv := &hl7v2.Server{Handler: h}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	client := hl7v2.NewClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, msg := range hl7v2.Generate(1, 2) {
		ack, err := client.Send(ctx, msg)
		if err != nil {
			fmt.Println(errs.CodeOf(err))
			return
		}
		fmt.Println(ack.Get("MSA-1"), ack.Get("MSA-2"))
	}
	// Output:
	// AA G1-0
	// AA G1-1
}

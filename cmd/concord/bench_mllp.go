package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/concord-hie/concord/exchange/hl7v2"
	"github.com/concord-hie/concord/internal/bench"
)

// s6Names are S6's scenarios: ingest (a load, after the reads) and parse (the MLLP path
// with no database, among the reads).
var s6Names = []string{"s6-mllp-ingest", "s6-mllp-parse"}

// mllpConns is S6's number of persistent MLLP connections.
const mllpConns = 8

// mllpMsg is one corpus message and the number of resources it maps to.
type mllpMsg struct {
	b         []byte
	resources int
}

// mllpLanes reads the ADT^A01 and ORU^R01 messages of the Simulated Hospital corpus (file)
// into mllpConns lanes, each message's patient always in the same lane (a sender's
// ordering unit), with the resources each maps to.
func mllpLanes(file string) ([][]mllpMsg, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	lanes := make([][]mllpMsg, mllpConns)
	total := 0
	for _, b := range bytes.Split(raw, []byte("\n\n")) {
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		m, err := hl7v2.Parse(b)
		if err != nil {
			continue
		}
		if t := m.Get("MSH-9.1") + "^" + m.Get("MSH-9.2"); t != "ADT^A01" && t != "ORU^R01" {
			continue
		}
		mp, err := hl7v2.Map(m, hl7v2.MapOptions{})
		if err != nil {
			continue
		}
		mrn := m.Get("PID-3.1")
		h := 0
		for i := 0; i < len(mrn); i++ {
			h = (h*31 + int(mrn[i])) % 1_000_003
		}
		lanes[h%mllpConns] = append(lanes[h%mllpConns], mllpMsg{b: b, resources: len(mp.Resources)})
		total++
	}
	if total == 0 {
		return nil, fmt.Errorf("no ADT^A01 or ORU^R01 message in %s", file)
	}
	return lanes, nil
}

// mllpSender is one worker's persistent MLLP connection and its place in its lane.
type mllpSender struct {
	addr string
	lane []mllpMsg
	c    *hl7v2.Client
	conn net.Conn
	next int
}

// send sends the lane's next message, with MSH-10 suffixed by the pass number after the
// first pass (so the dedupe on MSH-10 does not turn repeats into free ACKs), and returns
// the message and its ACK, or a CheckError unless the ACK is AA for its control ID. An
// empty lane sleeps and sends nothing (zero message).
func (s *mllpSender) send(ctx context.Context) (mllpMsg, error) {
	if len(s.lane) == 0 {
		time.Sleep(10 * time.Millisecond)
		return mllpMsg{}, nil
	}
	if s.c == nil {
		conn, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
		if err != nil {
			return mllpMsg{}, err
		}
		s.conn, s.c = conn, hl7v2.NewClient(conn)
	}
	m := s.lane[s.next%len(s.lane)]
	b, id := withPass(m.b, s.next/len(s.lane))
	s.next++
	ack, err := s.c.Send(ctx, b)
	if err != nil {
		s.conn.Close() // a late ACK may still come: start over on a new connection
		s.c = nil
		return mllpMsg{}, err
	}
	if ack.Get("MSA-1") != "AA" || ack.Get("MSA-2") != id {
		return mllpMsg{}, &bench.CheckError{Err: fmt.Errorf("message %s: ACK %s for %s, %s", id, ack.Get("MSA-1"), ack.Get("MSA-2"), ack.Get("ERR-8"))}
	}
	return mllpMsg{b: b, resources: m.resources}, nil
}

// close closes the sender's connection.
func (s *mllpSender) close() {
	if s.conn != nil {
		s.conn.Close()
	}
}

// mllpIngest is S6: the corpus (mllpLanes) replayed over mllpConns persistent MLLP
// connections to Concord's loopback listener, one op per message acknowledged, in
// resources/s (the resources the message maps to) against the INSERT anchor. A message is
// right only when its ACK is AA for its control ID. The corpus is registered as a member of
// its own (MSH-4 SFAC, MRN namespace "SIMULATOR MRN"). After its first pass a connection
// sends its messages again with new control IDs (the patients and results are then updated
// again). The returned check, called after the run, compares the member's stored message
// rows with the messages acknowledged: every one once, all AA.
func (e *benchEnv) mllpIngest(file string) (bench.Scenario, func() error, error) {
	lanes, err := mllpLanes(file)
	if err != nil {
		return nil, nil, err
	}
	dm, err := e.m.directory.AddMember(e.ctx, "Simulated Hospital", "urn:oid:2.16.840.1.113883.3.9199")
	if err != nil {
		return nil, nil, err
	}
	for _, err := range []error{
		e.m.directory.AddHL7Sender(e.ctx, dm.ID, "SIMHOSP", "SFAC"),
		e.m.directory.AddHL7Address(e.ctx, dm.ID, "127.0.0.0/8"),
		e.m.directory.AddHL7Namespace(e.ctx, dm.ID, "SIMULATOR MRN", ""),
	} {
		if err != nil {
			return nil, nil, err
		}
	}
	var acked, failed atomic.Int64
	var firstBad atomic.Pointer[string]
	items := new(atomic.Int64)
	senders := make([]*mllpSender, mllpConns)
	for i := range senders {
		senders[i] = &mllpSender{addr: e.m.cfg.MLLPAddr, lane: lanes[i]}
	}
	s := bench.FuncScenario{Name: s6Names[0], Anchor: bench.AnchorPGInsert, Workers: mllpConns, Metric: bench.Resources, Items: items,
		NewOp: func(w int) bench.Op {
			return func(ctx context.Context) (int64, error) {
				m, err := senders[w].send(ctx)
				if ce := (*bench.CheckError)(nil); errors.As(err, &ce) {
					failed.Add(1)
					msg := ce.Err.Error()
					firstBad.CompareAndSwap(nil, &msg)
				}
				if err != nil || m.b == nil {
					return 0, err
				}
				acked.Add(1)
				items.Add(int64(m.resources))
				return int64(len(m.b)), nil
			}
		}}
	check := func() error {
		for _, s := range senders {
			s.close()
		}
		if n := failed.Load(); n > 0 {
			first := ""
			if p := firstBad.Load(); p != nil {
				first = "; first: " + *p
			}
			return fmt.Errorf("S6: %d messages not accepted%s", n, first)
		}
		var rows, aa int64
		if err := e.m.pool.QueryRow(e.ctx, `SELECT count(*), count(*) FILTER (WHERE ack_code = 'AA') FROM exchange_hl7_messages WHERE member_id = $1`, dm.ID).Scan(&rows, &aa); err != nil {
			return err
		}
		// A message cut off by the end of a measurement may have committed without its ACK
		// being read: at most one per connection per measurement more rows than ACKs.
		if aa < acked.Load() || rows != aa {
			return fmt.Errorf("S6: %d messages acknowledged AA, %d stored (%d AA): lost or rejected messages", acked.Load(), rows, aa)
		}
		return nil
	}
	return s, check, nil
}

// mllpParse is S6's "parse + ACK without DB": the same corpus and connections as
// mllpIngest, sent to a loopback MLLP listener (the exchange's hl7v2.Server: framing,
// ER7 parsing, ACK) whose handler maps each message to FHIR (hl7v2.Map) and accepts it
// without storing, in messages/s against the hello-world anchor. stop closes the listener.
func (e *benchEnv) mllpParse(file string) (sc bench.Scenario, stop func(), err error) {
	lanes, err := mllpLanes(file)
	if err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	srv := &hl7v2.Server{Handler: hl7v2.HandlerFunc(func(_ context.Context, _ hl7v2.ConnInfo, m *hl7v2.Message) hl7v2.Ack {
		if _, err := hl7v2.Map(m, hl7v2.MapOptions{}); err != nil {
			return hl7v2.Ack{Code: hl7v2.AE, Text: "message does not map"}
		}
		return hl7v2.Accept()
	})}
	go func() { _ = srv.Serve(ln) }()
	senders := make([]*mllpSender, mllpConns)
	for i := range senders {
		senders[i] = &mllpSender{addr: ln.Addr().String(), lane: lanes[i]}
	}
	sc = bench.FuncScenario{Name: s6Names[1], Anchor: bench.AnchorHello, Workers: mllpConns,
		NewOp: func(w int) bench.Op {
			return func(ctx context.Context) (int64, error) {
				m, err := senders[w].send(ctx)
				return int64(len(m.b)), err
			}
		}}
	stop = func() {
		for _, s := range senders {
			s.close()
		}
		srv.Close()
	}
	return sc, stop, nil
}

// withPass returns msg with MSH-10 suffixed "-p<pass>" for pass > 0, and the control ID.
// The segment separator is CR (the corpus's).
func withPass(msg []byte, pass int) ([]byte, string) {
	seg, rest, _ := bytes.Cut(msg, []byte("\r"))
	fields := bytes.Split(seg, []byte("|"))
	if len(fields) < 10 {
		return msg, ""
	}
	if pass > 0 {
		fields[9] = append(append([]byte(nil), fields[9]...), "-p"+strconv.Itoa(pass)...)
	}
	id := string(fields[9])
	out := bytes.Join(fields, []byte("|"))
	if len(rest) > 0 || bytes.Contains(msg, []byte("\r")) {
		out = append(append(out, '\r'), rest...)
	}
	return out, id
}

// simhospitalFile is the Simulated Hospital corpus under a shared data directory.
func simhospitalFile(hl7Dir string) string {
	return filepath.Join(hl7Dir, "simhospital", "messages.hl7")
}

// printMLLP prints S6's message rate and ACK latency beside the resources/s of the table.
func printMLLP(w io.Writer, rep *bench.Report) {
	var ops []float64
	for _, r := range rep.Records {
		if r.Name == s6Names[0] {
			ops = append(ops, r.OpsPerSec)
		}
	}
	row, ok := rep.Row(s6Names[0])
	if !ok || len(ops) == 0 {
		return
	}
	s := bench.SpreadOf(ops)
	fmt.Fprintf(w, "%s: median %.0f msgs/s [%.0f–%.0f] over %d connections, ACK p50 %v p99 %v\n",
		s6Names[0], s.Median, s.Min, s.Max, mllpConns, row.P50.Round(time.Microsecond), row.P99.Round(time.Microsecond))
}

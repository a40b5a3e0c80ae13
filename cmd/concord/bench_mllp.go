package main

import (
	"bytes"
	"context"
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

// s6Names is S6's scenario.
var s6Names = []string{"s6-mllp-ingest"}

// mllpConns is S6's number of persistent MLLP connections.
const mllpConns = 8

// mllpIngest is S6: the ADT^A01 and ORU^R01 messages of the Simulated Hospital corpus
// (file) replayed over mllpConns persistent MLLP connections to Concord's loopback
// listener, each message's patient always on the same connection (a sender's ordering
// unit), one op per message acknowledged, in resources/s (the resources the message maps
// to) against the INSERT anchor. A message is right only when its ACK is AA for its
// control ID. The corpus is registered as a member of its own (MSH-4 SFAC, MRN namespace
// "SIMULATOR MRN"). When a connection has sent all its messages it sends them again with
// MSH-10 suffixed by the pass number, so the dedupe on MSH-10 does not turn repeats into
// free ACKs (the patients and results are then updated again). The returned check, called
// after the run, compares the member's stored message rows with the messages acknowledged:
// every one once, all AA.
func (e *benchEnv) mllpIngest(file string) (bench.Scenario, func() error, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, err
	}
	type msg struct {
		b         []byte
		resources int
	}
	lanes := make([][]msg, mllpConns)
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
		lanes[h%mllpConns] = append(lanes[h%mllpConns], msg{b: b, resources: len(mp.Resources)})
		total++
	}
	if total == 0 {
		return nil, nil, fmt.Errorf("no ADT^A01 or ORU^R01 message in %s", file)
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
	type worker struct {
		c    *hl7v2.Client
		conn net.Conn
		next int
	}
	workers := make([]*worker, mllpConns)
	for i := range workers {
		workers[i] = &worker{}
	}
	addr := e.m.cfg.MLLPAddr
	s := bench.FuncScenario{Name: s6Names[0], Anchor: bench.AnchorPGInsert, Workers: mllpConns, Metric: bench.Resources, Items: items,
		NewOp: func(w int) bench.Op {
			wk, lane := workers[w], lanes[w]
			return func(ctx context.Context) (int64, error) {
				if len(lane) == 0 {
					time.Sleep(10 * time.Millisecond) // an empty lane has nothing to send
					return 0, nil
				}
				if wk.c == nil {
					conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
					if err != nil {
						return 0, err
					}
					wk.conn, wk.c = conn, hl7v2.NewClient(conn)
				}
				m := lane[wk.next%len(lane)]
				b, id := withPass(m.b, wk.next/len(lane))
				wk.next++
				ack, err := wk.c.Send(ctx, b)
				if err != nil {
					wk.conn.Close() // a late ACK may still come: start over on a new connection
					wk.c = nil
					return 0, err
				}
				if ack.Get("MSA-1") != "AA" || ack.Get("MSA-2") != id {
					failed.Add(1)
					msg := fmt.Sprintf("message %s: ACK %s for %s, %s", id, ack.Get("MSA-1"), ack.Get("MSA-2"), ack.Get("ERR-8"))
					firstBad.CompareAndSwap(nil, &msg)
					return 0, &bench.CheckError{Err: fmt.Errorf("message %s not accepted", id)}
				}
				acked.Add(1)
				items.Add(int64(m.resources))
				return int64(len(b)), nil
			}
		}}
	check := func() error {
		for _, wk := range workers {
			if wk.conn != nil {
				wk.conn.Close()
			}
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

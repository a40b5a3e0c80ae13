package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/concord-hie/concord/exchange/hl7v2"
	"github.com/concord-hie/concord/internal/config"
	"github.com/concord-hie/concord/internal/testkit"
)

// TestMain lets a test start this very binary as `concord` (runMainEnv set), so a test can
// kill the server with SIGKILL and start it again, as an operator's crash would.
func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const runMainEnv = "CONCORD_TEST_RUN_MAIN"

// crashServer is `concord demo` running as a child process.
type crashServer struct {
	t   *testing.T
	env []string
	cmd *exec.Cmd
	out bytes.Buffer
}

func (s *crashServer) start(mllpAddr string) {
	s.t.Helper()
	s.cmd = exec.Command(os.Args[0], "demo")
	s.cmd.Env = append(os.Environ(), s.env...)
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", mllpAddr, 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("server did not open MLLP in 90 s; output:\n%s", s.out.String())
}

func (s *crashServer) kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGKILL)
		_ = s.cmd.Wait()
	}
}

// TestMLLPNoLossAcrossKill9 is issue 6's S6 durability check: 8 senders stream ORU^R01
// results over persistent MLLP connections; the server is killed with SIGKILL mid-stream
// and started again; each sender, like a real interface engine, re-sends every message it
// holds no ACK for until it gets one. In the end every message is stored exactly once: a
// message ACKed AA before the kill was committed (no loss), and one committed whose ACK
// was lost is recognised by its MSH-10 when re-sent (no duplicate).
func TestMLLPNoLossAcrossKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the server as a child process twice")
	}
	dbURL := testkit.DatabaseURL(t)
	_, prefix := testkit.Redis(t)
	s3 := testkit.S3(t)
	httpAddr, mllpAddr, oidcAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	_, port, _ := net.SplitHostPort(httpAddr)
	srv := &crashServer{t: t, env: []string{runMainEnv + "=1",
		"CONCORD_DATABASE_URL=" + dbURL, "CONCORD_REDIS_URL=" + os.Getenv("CONCORD_TEST_REDIS_URL"), "CONCORD_REDIS_PREFIX=" + prefix,
		"CONCORD_S3_ENDPOINT=" + s3.Endpoint, "CONCORD_S3_ACCESS_KEY=" + s3.AccessKey, "CONCORD_S3_SECRET_KEY=" + s3.SecretKey,
		"CONCORD_S3_BUCKET=" + s3.Bucket, "CONCORD_S3_REGION=" + s3.Region,
		"CONCORD_HTTP_ADDR=" + httpAddr, "CONCORD_BASE_URL=http://localhost:" + port, "CONCORD_MLLP_ADDR=" + mllpAddr,
		"CONCORD_DEV_OIDC_ADDR=" + oidcAddr, "CONCORD_ADMIN_ADDR=" + freeAddr(t), "CONCORD_DATA_DIR=" + t.TempDir(), "CONCORD_LOG_LEVEL=warn"}}
	t.Cleanup(srv.kill)
	srv.start(mllpAddr)

	region := demoRegion(config.Defaults().DemoSeed)
	lab := region.members[2]
	pid := "PID|1||" + region.mrn(2, 0) + "^^^" + lab.ID + "&" + strings.TrimPrefix(lab.OID, "urn:oid:") + "&ISO^MR||RIVERA^ANA||19840312|F\r"
	const senders, perSender, obxPer = 8, 40, 2
	oru := func(s, i int) []byte {
		id := fmt.Sprintf("crash-%d-%d", s, i)
		msg := "MSH|^~\\&|LIS|" + lab.ID + "|CONCORD|HIE|20261128093000||ORU^R01^ORU_R01|" + id + "|P|2.5.1\r" + pid +
			"OBR|1||" + id + "|24331-1^Lipid panel^LN|||20261128083000|||||||||||||||20261128090000|||F\r"
		for k := 1; k <= obxPer; k++ {
			msg += fmt.Sprintf("OBX|%d|NM|2085-9^Cholesterol in HDL [Mass/volume] in Serum or Plasma^LN||%d|mg/dL^mg/dL^UCUM|>=40||||F|||20261128083000\r", k, 40+k)
		}
		return []byte(msg)
	}

	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	count := func(typ string) int {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM fhir_resources WHERE type = $1 AND member_id = $2 AND NOT deleted`, typ, lab.ID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	obs0, reports0 := count("Observation"), count("DiagnosticReport")

	var (
		mu      sync.Mutex
		acked   int
		revived = make(chan struct{})
		wg      sync.WaitGroup
		failure = make(chan error, senders)
	)
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			var conn net.Conn
			var cl *hl7v2.Client
			for i := 0; i < perSender; {
				if conn == nil {
					c, err := net.DialTimeout("tcp", mllpAddr, time.Second)
					if err != nil {
						select { // the server is down: wait for it to come back
						case <-revived:
						case <-time.After(100 * time.Millisecond):
						}
						continue
					}
					conn, cl = c, hl7v2.NewClient(c)
				}
				sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				ack, err := cl.Send(sctx, oru(s, i))
				cancel()
				if err != nil { // no ACK: the message is re-sent on a new connection
					conn.Close()
					conn = nil
					continue
				}
				if ack.Get("MSA-1") != "AA" || ack.Get("MSA-2") != fmt.Sprintf("crash-%d-%d", s, i) {
					failure <- fmt.Errorf("sender %d message %d: ACK %q", s, i, ack.Bytes())
					return
				}
				i++
				mu.Lock()
				acked++
				mu.Unlock()
			}
			if conn != nil {
				conn.Close()
			}
		}(s)
	}
	// Kill the server once about a third of the messages are ACKed, then start it again.
	for {
		mu.Lock()
		n := acked
		mu.Unlock()
		if n >= senders*perSender/3 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	srv.kill()
	mu.Lock()
	atKill := acked
	mu.Unlock()
	srv.start(mllpAddr)
	close(revived)
	wg.Wait()
	close(failure)
	for err := range failure {
		t.Fatal(err)
	}
	// Messages ACKed before the kill, sent again after the restart (a sender that lost
	// those ACKs would): the same AA, nothing new stored.
	c, err := net.DialTimeout("tcp", mllpAddr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl := hl7v2.NewClient(c)
	for s := 0; s < senders; s++ {
		ack, err := cl.Send(ctx, oru(s, 0))
		if err != nil || ack.Get("MSA-1") != "AA" {
			t.Fatalf("re-sent crash-%d-0: %v, ACK %q", s, err, ack.Bytes())
		}
	}
	if atKill >= senders*perSender {
		t.Fatalf("every message was ACKed before the kill (%d): the test did not crash the server mid-stream", atKill)
	}
	obs, reports := count("Observation")-obs0, count("DiagnosticReport")-reports0
	if reports != senders*perSender || obs != senders*perSender*obxPer {
		t.Fatalf("after kill -9 at %d ACKs and restart: %d DiagnosticReports and %d Observations stored; want %d and %d (no loss, no duplicate)",
			atKill, reports, obs, senders*perSender, senders*perSender*obxPer)
	}
	t.Logf("killed at %d of %d ACKs; all %d messages stored exactly once", atKill, senders*perSender, senders*perSender)
}

package hl7v2

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/concord-hie/concord/internal/errs"
)

func TestFrameReader(t *testing.T) {
	var in bytes.Buffer
	in.WriteString("junk\r\n")
	in.Write(AppendFrame(nil, []byte("one")))
	in.WriteString("\n\n")
	in.Write(AppendFrame(nil, bytes.Repeat([]byte("x"), 100))) // oversize
	in.WriteString("\x0bpartial then restart")
	in.Write(AppendFrame(nil, []byte("two")))
	in.WriteString("\x0bthree\x1c") // no trailing CR
	in.Write(AppendFrame(nil, []byte("four")))
	in.WriteString("\x0bunterminated")
	fr := NewFrameReader(&in, 10)
	for _, want := range []string{"one", "TOO", "two", "three", "four"} {
		got, err := fr.Next()
		if want == "TOO" {
			if !errs.Is(err, errs.TooLarge) || len(got) != 10 {
				t.Fatalf("oversize: %q %v", got, err)
			}
			continue
		}
		if err != nil || string(got) != want {
			t.Fatalf("Next = %q, %v; want %q", got, err, want)
		}
	}
	if _, err := fr.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("unterminated: %v", err)
	}
}

func TestFrameReaderBoundedMemory(t *testing.T) {
	// A 64 MiB frame with a 1 KiB limit: the reader must skip it without holding it.
	r := io.MultiReader(strings.NewReader("\x0bMSH|^~\\&|"), io.LimitReader(zeros{}, 64<<20),
		bytes.NewReader([]byte{EndBlock, CarriageReturn}), bytes.NewReader(AppendFrame(nil, []byte("next"))))
	fr := NewFrameReader(r, 1<<10)
	got, err := fr.Next()
	if !errs.Is(err, errs.TooLarge) || !bytes.HasPrefix(got, []byte("MSH|")) {
		t.Fatalf("first: %v", err)
	}
	if cap(fr.buf) > 64<<10 {
		t.Errorf("buffer grew to %d", cap(fr.buf))
	}
	got, err = fr.Next()
	if err != nil || string(got) != "next" {
		t.Fatalf("resync: %q %v", got, err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	return len(p), nil
}

func TestBuildACK(t *testing.T) {
	m, err := Parse([]byte(sampleADT))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	ack, err := Parse(BuildACK(m.Header(), Ack{Code: AE, Err: DataTypeError, Loc: "PID-7", Text: "Data type error"}, "ACK1", now))
	if err != nil {
		t.Fatal(err)
	}
	for loc, want := range map[string]string{
		"MSH-3": "CONCORD", "MSH-4": "HIE", "MSH-5": "EHR", "MSH-6": "CLINIC_A",
		"MSH-9": "ACK^A01^ACK", "MSH-10": "ACK1", "MSH-11": "P", "MSH-12": "2.5.1",
		"MSH-7": "20240102030405+0000",
		"MSA-1": "AE", "MSA-2": "MSG0001", "MSA-3": "Data type error",
		"ERR-2": "PID^1^7", "ERR-3.1": "102", "ERR-3.3": "HL70357", "ERR-4": "E",
	} {
		if got := ack.Get(loc); got != want {
			t.Errorf("%s = %q, want %q", loc, got, want)
		}
	}
	// 2.3: ERR-1 carries the location and code.
	h := m.Header()
	h.Version = "2.3"
	ack, err = Parse(BuildACK(h, Ack{Code: AE, Err: RequiredFieldMissing, Loc: "PID-3"}, "ACK2", now))
	if err != nil {
		t.Fatal(err)
	}
	if got := ack.Get("ERR-1"); got != "PID^1^3^101&Required field missing&HL70357" {
		t.Errorf("ERR-1 = %q", got)
	}
	if got := ack.Get("MSH-9"); got != "ACK^A01" {
		t.Errorf("2.3 MSH-9 = %q", got)
	}
	// AA has no ERR.
	ack, _ = Parse(BuildACK(m.Header(), Accept(), "ACK3", now))
	if _, ok := ack.Segment("ERR"); ok || ack.Get("MSA-1") != "AA" {
		t.Errorf("AA ack: %q", ack.Bytes())
	}
}

func TestAckFromError(t *testing.T) {
	tests := []struct {
		err  error
		code AckCode
		e    ErrCode
	}{
		{nil, AA, NoError},
		{problem("x", DataTypeError, "PID-7", ""), AE, DataTypeError},
		{problem("x", UnsupportedVersion, "MSH-12", ""), AR, UnsupportedVersion},
		{errs.E("x", errs.Unavailable, "db down"), AR, ApplicationInternal},
		{errors.New("boom"), AR, ApplicationInternal},
	}
	for _, tt := range tests {
		got := AckFromError(tt.err)
		if got.Code != tt.code || got.Err != tt.e {
			t.Errorf("AckFromError(%v) = %+v", tt.err, got)
		}
	}
}

// startServer runs s on 127.0.0.1 and returns its address; the server is shut down at
// the end of the test.
func startServer(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no loopback listener: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != ErrServerClosed {
			t.Errorf("Serve = %v", err)
		}
	})
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func msgWithID(id string) []byte {
	return []byte(strings.Replace(sampleADT, "MSG0001", id, 1))
}

func TestServerOrderPanicAndBadFrames(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	h := HandlerFunc(func(ctx context.Context, c ConnInfo, m *Message) Ack {
		id := m.Get("MSH-10")
		mu.Lock()
		seen = append(seen, id)
		mu.Unlock()
		switch id {
		case "PANIC":
			panic("handler bug")
		case "SLOW":
			time.Sleep(50 * time.Millisecond)
		}
		return Accept()
	})
	addr := startServer(t, &Server{Handler: h, MaxMessage: 1 << 16})
	conn := dial(t, addr)
	// Pipeline everything at once, then read the ACKs: they must come back in order.
	var out []byte
	ids := []string{"SLOW", "M2", "PANIC", "M4", "BAD", "BIG", "M7"}
	for _, id := range ids {
		switch id {
		case "BAD":
			out = AppendFrame(out, []byte("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|BAD|P|2.5\rnot a segment\r"))
		case "BIG":
			out = AppendFrame(out, append(msgWithID("BIG"), bytes.Repeat([]byte("NTE|1||x\r"), 10000)...))
		default:
			out = AppendFrame(out, msgWithID(id))
		}
	}
	if _, err := conn.Write(out); err != nil {
		t.Fatal(err)
	}
	fr := NewFrameReader(conn, 0)
	want := []struct {
		code AckCode
		e    ErrCode
	}{{AA, 0}, {AA, 0}, {AR, ApplicationInternal}, {AA, 0}, {AE, SegmentSequenceError}, {AE, DataTypeError}, {AA, 0}}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i, id := range ids {
		b, err := fr.Next()
		if err != nil {
			t.Fatalf("ack %d: %v", i, err)
		}
		ack, err := Parse(b)
		if err != nil {
			t.Fatalf("ack %d: %v", i, err)
		}
		if got := ack.Get("MSA-2"); got != id {
			t.Errorf("ack %d MSA-2 = %q, want %q", i, got, id)
		}
		if got := AckCode(ack.Get("MSA-1")); got != want[i].code {
			t.Errorf("ack %d (%s) MSA-1 = %s, want %s", i, id, got, want[i].code)
		}
		if want[i].e != 0 && ack.Get("ERR-3.1") != itoa(int(want[i].e)) {
			t.Errorf("ack %d ERR = %q", i, ack.Get("ERR-3"))
		}
		if id == "BIG" && ack.Get("MSA-3") != "Message too large" {
			t.Errorf("oversize MSA-3 = %q", ack.Get("MSA-3"))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, ",") != "SLOW,M2,PANIC,M4,M7" {
		t.Errorf("handler order %v", seen)
	}
}

func TestServerUnauthenticated(t *testing.T) {
	called := false
	s := &Server{
		Handler:      HandlerFunc(func(context.Context, ConnInfo, *Message) Ack { called = true; return Accept() }),
		Authenticate: AllowAddrs(map[netip.Prefix]string{netip.MustParsePrefix("10.0.0.0/8"): "member-a"}),
	}
	addr := startServer(t, s)
	conn := dial(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := NewClient(conn)
	ack, err := c.Send(ctx, msgWithID("X1"))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Get("MSA-1") != "AR" || ack.Get("MSA-2") != "X1" {
		t.Errorf("ack %q", ack.Bytes())
	}
	if _, err := c.Send(ctx, msgWithID("X2")); err == nil {
		t.Error("connection stayed open")
	}
	if called {
		t.Error("handler called for an unauthenticated connection")
	}
}

func TestServerMemberFromAddr(t *testing.T) {
	got := make(chan string, 1)
	s := &Server{
		Handler: HandlerFunc(func(_ context.Context, c ConnInfo, _ *Message) Ack {
			got <- c.Member
			return Accept()
		}),
		Authenticate: AllowAddrs(map[netip.Prefix]string{
			netip.MustParsePrefix("127.0.0.0/8"): "member-x", netip.MustParsePrefix("127.0.0.1/32"): "member-a",
			netip.MustParsePrefix("0.0.0.0/0"): "member-y"}),
	}
	conn := dial(t, startServer(t, s))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := Send(ctx, conn, msgWithID("Y"))
	if err != nil || ack.Get("MSA-1") != "AA" {
		t.Fatalf("%v %v", ack, err)
	}
	if m := <-got; m != "member-a" {
		t.Errorf("member %q", m)
	}
}

func TestServerIdleTimeoutAndShutdownDrains(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	s := &Server{
		IdleTimeout: 200 * time.Millisecond,
		Handler: HandlerFunc(func(_ context.Context, _ ConnInfo, m *Message) Ack {
			if m.Get("MSH-10") == "HOLD" {
				started <- struct{}{}
				<-release
			}
			return Accept()
		}),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skip(err)
	}
	go s.Serve(ln)
	addr := ln.Addr().String()

	idle := dial(t, addr)
	_ = idle.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("idle connection: %v, want EOF after idle timeout", err)
	}

	busy := dial(t, addr)
	if err := WriteFrame(busy, msgWithID("HOLD")); err != nil {
		t.Fatal(err)
	}
	<-started
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	time.Sleep(50 * time.Millisecond)
	close(release)
	_ = busy.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := NewFrameReader(busy, 0).Next()
	if err != nil {
		t.Fatalf("in-flight message lost its ACK: %v", err)
	}
	if ack, _ := Parse(b); ack == nil || ack.Get("MSA-1") != "AA" {
		t.Errorf("ack %q", b)
	}
	if err := <-shut; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

func TestServerTLS(t *testing.T) {
	ca, caKey := newCert(t, nil, nil, "test ca", true)
	srv, srvKey := newCert(t, ca, caKey, "127.0.0.1", false)
	cli, cliKey := newCert(t, ca, caKey, "member-b", false)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	s := &Server{
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{{Certificate: [][]byte{srv.Raw}, PrivateKey: srvKey}},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    pool,
		},
		Authenticate: AllowCerts(func(c *x509.Certificate) (string, bool) {
			return c.Subject.CommonName, c.Subject.CommonName == "member-b"
		}),
		Handler: HandlerFunc(func(_ context.Context, c ConnInfo, _ *Message) Ack {
			if c.Member != "member-b" || !c.TLS {
				return Ack{Code: AE, Err: ApplicationInternal}
			}
			return Accept()
		}),
	}
	addr := startServer(t, s)
	conf := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1",
		Certificates: []tls.Certificate{{Certificate: [][]byte{cli.Raw}, PrivateKey: cliKey}}}
	conn, err := tls.Dial("tcp", addr, conf)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := Send(ctx, conn, msgWithID("T1"))
	if err != nil || ack.Get("MSA-1") != "AA" {
		t.Fatalf("ack %v err %v", ack, err)
	}
	// TLS 1.1 is refused.
	old := conf.Clone()
	old.MaxVersion = tls.VersionTLS11
	if c, err := tls.Dial("tcp", addr, old); err == nil {
		c.Close()
		t.Error("TLS 1.1 accepted")
	}
}

func newCert(t *testing.T, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, cn string, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IsCA:         isCA, BasicConstraintsValid: true,
	}
	if ip := net.ParseIP(cn); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func FuzzMLLP(f *testing.F) {
	f.Add(AppendFrame(nil, []byte(sampleADT)))
	f.Add([]byte("\x0b\x0b\x1c\x1c\r\x0babc"))
	f.Add([]byte("junk\x0bMSH|^~\\&|A\x1c"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr := NewFrameReader(bytes.NewReader(b), 64)
		var frames [][]byte
		for i := 0; i < len(b)+2; i++ {
			got, err := fr.Next()
			if err != nil && !errs.Is(err, errs.TooLarge) {
				break
			}
			if len(got) > 64 {
				t.Fatalf("frame of %d bytes over the limit", len(got))
			}
			if err == nil {
				frames = append(frames, append([]byte(nil), got...))
				if m, perr := Parse(got); perr == nil {
					out := m.Bytes()
					m2, perr := Parse(out)
					if perr != nil || !bytes.Equal(m2.Bytes(), out) {
						t.Fatalf("parse/write/parse unstable: %v", perr)
					}
				}
			}
			if h, ok := ReadHeader(got); ok {
				_ = BuildACK(h, Ack{Code: AE, Err: DataTypeError, Loc: "PID-7"}, "X", time.Unix(0, 0))
			}
		}
		// Re-framing the frames that carry no control bytes gives them back.
		var out []byte
		var keep [][]byte
		for _, fr := range frames {
			if bytes.IndexByte(fr, StartBlock) < 0 && bytes.IndexByte(fr, EndBlock) < 0 {
				out = AppendFrame(out, fr)
				keep = append(keep, fr)
			}
		}
		fr2 := NewFrameReader(bytes.NewReader(out), 64)
		for _, want := range keep {
			got, err := fr2.Next()
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("reframe: %q %v want %q", got, err, want)
			}
		}
	})
}

func TestServerMaxConns(t *testing.T) {
	addr := startServer(t, &Server{MaxConns: 1, Handler: HandlerFunc(func(context.Context, ConnInfo, *Message) Ack { return Accept() })})
	first := dial(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c1 := NewClient(first)
	if _, err := c1.Send(ctx, msgWithID("C1")); err != nil {
		t.Fatal(err)
	}
	second := dial(t, addr)
	if _, err := Send(ctx, second, msgWithID("C2")); err == nil {
		t.Error("second connection served over the limit")
	}
	if _, err := c1.Send(ctx, msgWithID("C3")); err != nil {
		t.Errorf("first connection broken: %v", err)
	}
}

// TestServerFrameEndedWithoutCR: a sender that ends its frame with 0x1C alone and then
// waits for the ACK gets it at once, not after an idle timeout; the next frame on the
// same connection is read as usual.
func TestServerFrameEndedWithoutCR(t *testing.T) {
	addr := startServer(t, &Server{Handler: HandlerFunc(func(context.Context, ConnInfo, *Message) Ack { return Accept() })})
	conn := dial(t, addr)
	fr := NewFrameReader(conn, 0)
	for _, id := range []string{"NOCR1", "NOCR2", "NOCR3"} {
		frame := append([]byte{StartBlock}, msgWithID(id)...)
		frame = append(frame, EndBlock)
		if _, err := conn.Write(frame); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_ = conn.SetReadDeadline(start.Add(3 * time.Second))
		b, err := fr.Next()
		if err != nil {
			t.Fatalf("%s: no ACK: %v", id, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s: ACK after %v", id, d)
		}
		ack, err := Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		if ack.Get("MSA-1") != "AA" || ack.Get("MSA-2") != id {
			t.Errorf("%s: ACK %q", id, b)
		}
	}
}

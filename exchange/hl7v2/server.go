package hl7v2

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/concord-hie/concord/internal/errs"
)

// ConnInfo describes the connection a message came in on.
type ConnInfo struct {
	ID         uint64   // unique per Server, for logs
	RemoteAddr net.Addr // the peer
	TLS        bool     // whether the connection is TLS
	// PeerCert is the verified client certificate (the leaf of the first verified chain),
	// nil without TLS or when the TLS config did not verify client certificates.
	PeerCert *x509.Certificate
	// Member is the member organization the Authenticator resolved; "" when the Server has
	// no Authenticator.
	Member string
}

// Authenticator resolves the member behind a connection from its certificate or address.
// An error (any) means unauthenticated: the first message, if it comes within the
// Server's UnauthTimeout, gets an AR, and the connection is closed.
type Authenticator func(ctx context.Context, c ConnInfo) (member string, err error)

// Handler processes one parsed message and answers it. The exchange commits the data and
// only then returns AA; it returns AckFromError(err) for failures. HandleHL7 is called for
// the messages of one connection strictly in order, never concurrently for one connection.
// A panic is recovered and answered AR 207. Text in the Ack must be free of PHI.
type Handler interface {
	HandleHL7(ctx context.Context, conn ConnInfo, msg *Message) Ack
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, conn ConnInfo, msg *Message) Ack

// HandleHL7 calls f.
func (f HandlerFunc) HandleHL7(ctx context.Context, conn ConnInfo, msg *Message) Ack {
	return f(ctx, conn, msg)
}

// AllowCerts authenticates by verified client certificate: member returns the member for
// a certificate and false when it knows none. Connections without one are refused.
func AllowCerts(member func(*x509.Certificate) (string, bool)) Authenticator {
	return func(_ context.Context, c ConnInfo) (string, error) {
		if c.PeerCert == nil {
			return "", errs.E("hl7v2.AllowCerts", errs.Unauthenticated, "no client certificate")
		}
		if m, ok := member(c.PeerCert); ok {
			return m, nil
		}
		return "", errs.E("hl7v2.AllowCerts", errs.Unauthenticated, "unknown client certificate")
	}
}

// AllowAddrs authenticates by source address: the member of the longest prefix that
// contains the peer's IP (IPv4-mapped IPv6 addresses match IPv4 prefixes).
func AllowAddrs(allow map[netip.Prefix]string) Authenticator {
	return func(_ context.Context, c ConnInfo) (string, error) {
		if ta, ok := c.RemoteAddr.(*net.TCPAddr); ok {
			ip, _ := netip.AddrFromSlice(ta.IP)
			ip = ip.Unmap()
			best, member := -1, ""
			for p, m := range allow {
				if p.Contains(ip) && p.Bits() > best {
					best, member = p.Bits(), m
				}
			}
			if best >= 0 {
				return member, nil
			}
		}
		return "", errs.E("hl7v2.AllowAddrs", errs.Unauthenticated, "address not allowed")
	}
}

// Server is an MLLP listener. Each connection is served by one goroutine that reads a
// frame, parses it, calls the Handler and writes exactly one ACK before reading the next,
// so ACKs come back in order on the same connection. A frame that does not parse gets the
// parse error's AE; one larger than MaxMessage gets AE 102 "Message too large" (resending
// it as is cannot succeed); one whose handler panics gets AR 207. Each ACK is built from
// whatever MSH could be read, and the connection stays open. Set the fields before Serve;
// do not change them afterwards.
type Server struct {
	Handler Handler
	// Authenticate resolves the member of each connection; nil accepts every connection
	// with an empty Member (tests, trusted networks only).
	Authenticate Authenticator
	// TLSConfig, when set, makes the server speak TLS; versions below 1.2 are refused.
	// Set ClientAuth to tls.RequireAndVerifyClientCert to get ConnInfo.PeerCert.
	TLSConfig *tls.Config
	// MaxMessage bounds a frame (DefaultMaxMessage when 0).
	MaxMessage int
	// MaxConns bounds concurrent connections (1024 when 0); each may buffer MaxMessage
	// bytes. A connection over the limit is closed at once, before any read.
	MaxConns int
	// MaxConnsPerAddr bounds concurrent connections from one IPv4 address or one IPv6 /64
	// (DefaultMaxConnsPerAddr when 0), so that one peer cannot take every MaxConns slot: a
	// host given a /64 has more addresses than it could ever need connections.
	// A connection over it is closed at once, before any read.
	MaxConnsPerAddr int
	// IdleTimeout closes a connection that sends nothing for this long (5 minutes when 0).
	IdleTimeout time.Duration
	// UnauthTimeout is how long a connection the Authenticator refused has to send the
	// frame that gets its AR before it is closed (DefaultUnauthTimeout when 0). It is
	// short, and counted from the refusal, not from the last byte: such a connection
	// holds a MaxConns slot and will never be served.
	UnauthTimeout time.Duration
	// WriteTimeout bounds writing one ACK (30 s when 0).
	WriteTimeout time.Duration
	// Logger receives connection and message events: IDs and codes only, never payloads.
	Logger *slog.Logger
	// Now is the clock for ACK timestamps (time.Now when nil).
	Now func() time.Time

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*srvConn]struct{}
	perAddr   map[netip.Addr]int // open connections by peer IP; only TCP peers are counted
	closing   bool
	wg        sync.WaitGroup
	nextConn  atomic.Uint64
	nextAck   atomic.Uint64
	nonce     string
	baseCtx   context.Context
	cancel    context.CancelFunc
}

type srvConn struct {
	c    net.Conn
	addr netip.Addr // the peer's address as MaxConnsPerAddr counts it (addrKey); invalid when not TCP
}

// Defaults for the Server's limits on connections.
const (
	// DefaultMaxConnsPerAddr is the MaxConnsPerAddr default: far more than the few
	// connections a member's engine keeps open, far fewer than MaxConns.
	DefaultMaxConnsPerAddr = 64
	// DefaultUnauthTimeout is the UnauthTimeout default: time enough for a sender that
	// writes as soon as it connects to get its AR, and a silent peer holds its slot no
	// longer.
	DefaultUnauthTimeout = 5 * time.Second
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errs.E("hl7v2.Server.Serve", errs.Unavailable, "server closed")

func (s *Server) initLocked() {
	if s.listeners == nil {
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[*srvConn]struct{}{}
		s.perAddr = map[netip.Addr]int{}
		var b [6]byte
		_, _ = rand.Read(b[:])
		s.nonce = hex.EncodeToString(b[:])
		s.baseCtx, s.cancel = context.WithCancel(context.Background())
	}
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// ListenAndServe listens on the TCP address addr and calls Serve.
func (s *Server) ListenAndServe(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return errs.E("hl7v2.Server.ListenAndServe", errs.Unavailable, err)
	}
	return s.Serve(ln)
}

// Serve accepts connections on ln until Shutdown or Close, then returns ErrServerClosed.
// It returns another error if accepting fails for good.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	s.initLocked()
	if s.closing {
		s.mu.Unlock()
		_ = ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		_ = ln.Close()
	}()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return errs.E("hl7v2.Server.Serve", errs.Unavailable, err)
		}
		delay = 0
		sc := &srvConn{c: c}
		if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			ip, _ := netip.AddrFromSlice(ta.IP)
			sc.addr = addrKey(ip)
		}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			_ = c.Close()
			return ErrServerClosed
		}
		limit := s.MaxConns
		if limit <= 0 {
			limit = 1024
		}
		perAddr := s.MaxConnsPerAddr
		if perAddr <= 0 {
			perAddr = DefaultMaxConnsPerAddr
		}
		if len(s.conns) >= limit {
			s.mu.Unlock()
			_ = c.Close()
			s.logger().Warn("hl7v2: connection limit reached", "limit", limit)
			continue
		}
		if sc.addr.IsValid() && s.perAddr[sc.addr] >= perAddr {
			s.mu.Unlock()
			_ = c.Close()
			s.logger().Warn("hl7v2: connection limit per address reached", "limit", perAddr)
			continue
		}
		s.conns[sc] = struct{}{}
		if sc.addr.IsValid() {
			s.perAddr[sc.addr]++
		}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(sc)
	}
}

// Shutdown stops accepting, lets every connection finish the message it is handling and
// send its ACK, then closes the connections. Frames not yet completely received are not
// processed (their senders resend, having had no ACK). If ctx ends first, the remaining
// connections are closed and handlers' contexts cancelled, and ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.initLocked()
	s.closing = true
	for ln := range s.listeners {
		_ = ln.Close()
	}
	for sc := range s.conns {
		// Wake readers blocked between messages; a connection handling a message notices
		// after its ACK.
		_ = sc.c.SetReadDeadline(time.Now())
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.Close()
		<-done
		return ctx.Err()
	}
}

// Close closes the listeners and every connection at once, cancelling handlers' contexts.
func (s *Server) Close() {
	s.mu.Lock()
	s.initLocked()
	s.closing = true
	for ln := range s.listeners {
		_ = ln.Close()
	}
	for sc := range s.conns {
		_ = sc.c.Close()
	}
	s.mu.Unlock()
	s.cancel()
}

func (s *Server) serveConn(sc *srvConn) {
	defer s.wg.Done()
	defer func() {
		_ = sc.c.Close()
		s.mu.Lock()
		delete(s.conns, sc)
		if sc.addr.IsValid() {
			if s.perAddr[sc.addr]--; s.perAddr[sc.addr] <= 0 {
				delete(s.perAddr, sc.addr)
			}
		}
		s.mu.Unlock()
	}()
	log := s.logger()
	info := ConnInfo{ID: s.nextConn.Add(1), RemoteAddr: sc.c.RemoteAddr()}
	idle := s.IdleTimeout
	if idle <= 0 {
		idle = 5 * time.Minute
	}
	conn := sc.c
	if s.TLSConfig != nil {
		cfg := s.TLSConfig.Clone()
		if cfg.MinVersion < tls.VersionTLS12 {
			cfg.MinVersion = tls.VersionTLS12
		}
		tc := tls.Server(sc.c, cfg)
		hctx, cancel := context.WithTimeout(s.baseCtx, min(idle, 30*time.Second))
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			log.Info("hl7v2: tls handshake failed", "conn", info.ID)
			return
		}
		st := tc.ConnectionState()
		info.TLS = true
		if len(st.VerifiedChains) > 0 && len(st.VerifiedChains[0]) > 0 {
			info.PeerCert = st.VerifiedChains[0][0]
		}
		conn = tc
	}
	fr := NewFrameReader(conn, s.MaxMessage)
	authed := true
	if s.Authenticate != nil {
		m, err := s.Authenticate(s.baseCtx, info)
		if err != nil {
			authed = false
			log.Info("hl7v2: connection not authenticated", "conn", info.ID)
			// One frame, and soon: the loop answers it AR and returns. A peer that
			// sends nothing must not keep its slot for IdleTimeout.
			idle = s.UnauthTimeout
			if idle <= 0 {
				idle = DefaultUnauthTimeout
			}
		}
		info.Member = m
	}
	for {
		// Checking and arming under s.mu means Shutdown's wake-up deadline cannot be
		// overwritten by this one.
		s.mu.Lock()
		closing := s.closing
		if !closing {
			_ = conn.SetReadDeadline(time.Now().Add(idle))
		}
		s.mu.Unlock()
		if closing {
			return
		}
		frame, err := fr.Next()
		if err != nil && !errs.Is(err, errs.TooLarge) {
			return // EOF, idle timeout, shutdown wake-up or broken connection
		}
		var h Header
		var ack Ack
		switch {
		case err != nil: // too large
			h, _ = ReadHeader(frame)
			// AE, not AR: the same bytes resent can never fit, and an AR makes engines
			// resend forever. Table 0357 (2.5.1) has no size code; the limit is a
			// constraint on the message's content, hence 102. No location: the
			// oversize element is unknown, the frame was not read whole.
			ack = Ack{Code: AE, Err: DataTypeError, Text: "Message too large"}
		case !authed:
			h, _ = ReadHeader(frame)
			ack = Ack{Code: AR, Err: ApplicationInternal, Text: "Not authorized"}
		default:
			h, ack = s.handle(info, frame)
		}
		werr := s.writeAck(conn, h, ack)
		log.Debug("hl7v2: message", "conn", info.ID, "member", info.Member, "ack", string(ack.Code), "err", int(ack.Err))
		if werr != nil || !authed {
			return
		}
	}
}

// handle parses and dispatches one frame, recovering a handler panic.
func (s *Server) handle(info ConnInfo, frame []byte) (h Header, ack Ack) {
	msg, err := Parse(frame)
	if err != nil {
		h, _ = ReadHeader(frame)
		return h, AckFromError(err)
	}
	h = msg.Header()
	defer func() {
		if r := recover(); r != nil {
			s.logger().Error("hl7v2: handler panic", "conn", info.ID, "member", info.Member)
			ack = Ack{Code: AR, Err: ApplicationInternal, Text: "Application internal error"}
		}
	}()
	ack = s.Handler.HandleHL7(s.baseCtx, info, msg)
	if ack.Code == "" {
		ack = Ack{Code: AR, Err: ApplicationInternal, Text: "Application internal error"}
	}
	return h, ack
}

func (s *Server) writeAck(conn net.Conn, h Header, a Ack) error {
	id := "A" + s.nonce + itoa(int(s.nextAck.Add(1)))
	b := BuildACK(h, a, id, s.now())
	wt := s.WriteTimeout
	if wt <= 0 {
		wt = 30 * time.Second
	}
	_ = conn.SetWriteDeadline(time.Now().Add(wt))
	return WriteFrame(conn, b)
}

// Client sends messages over one MLLP connection and reads their ACKs, one at a time.
type Client struct {
	conn net.Conn
	fr   *FrameReader
}

// NewClient wraps conn; the Client reads from conn, so do not read from it elsewhere.
func NewClient(conn net.Conn) *Client {
	return &Client{conn: conn, fr: NewFrameReader(conn, DefaultMaxMessage)}
}

// Send writes msg as one frame and returns the parsed ACK that answers it. It honours
// ctx's deadline and cancellation; on any error the connection should be closed, since
// a late ACK may still arrive. It returns errs.Unavailable for I/O failures and the
// parse error for an unparseable ACK.
func (c *Client) Send(ctx context.Context, msg []byte) (*Message, error) {
	const op = "hl7v2.Client.Send"
	if dl, ok := ctx.Deadline(); ok {
		_ = c.conn.SetDeadline(dl)
	} else {
		_ = c.conn.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := WriteFrame(c.conn, msg); err != nil {
		return nil, errs.E(op, errs.Unavailable, err)
	}
	b, err := c.fr.Next()
	if err != nil {
		if ctx.Err() != nil {
			return nil, errs.E(op, errs.Unavailable, ctx.Err())
		}
		return nil, errs.E(op, errs.Unavailable, err)
	}
	return Parse(b)
}

// Send sends one message on conn and returns its ACK. For several messages on one
// connection use a Client, which keeps the read buffer between calls.
func Send(ctx context.Context, conn net.Conn, msg []byte) (*Message, error) {
	return NewClient(conn).Send(ctx, msg)
}

// addrKey is the address a peer's connections are counted under: an IPv4 address (also
// when written IPv4-mapped), or the /64 an IPv6 address is in.
func addrKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return ip
}

// Package devs3 runs an embedded S3 server for `concord demo` when no S3 endpoint is
// configured. It is gofakes3 on a bbolt file, so objects survive restarts and every write is
// one bbolt transaction: a crash never leaves half an object. It is for development only:
//
//   - gofakes3 checks no signature. Any access key and secret key are accepted; AccessKey
//     and SecretKey return fixed values for clients that insist on having some. Start
//     therefore refuses to listen on anything but a loopback address.
//   - It does not encrypt (documents.S3Blobs detects that and stores plainly).
//   - It holds each object in memory while serving it, and keeps unfinished multipart
//     uploads in memory only (lost on restart, like an aborted upload).
package devs3

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3bolt"
	bolt "go.etcd.io/bbolt"

	"github.com/concord-hie/concord/internal/errs"
)

// DBFile is the name of the bbolt file Start keeps in its directory.
const DBFile = "devs3.bolt"

// Server is a running embedded S3 server.
type Server struct {
	db       *bolt.DB
	srv      *http.Server
	endpoint string
	served   chan struct{}
	stop     func() bool // detaches the ctx watcher

	closeOnce sync.Once
	closeErr  error
}

// Start opens (or creates) the store in dir and serves S3 on addr, which must be a loopback
// address ("127.0.0.1:0" picks a free port; "" means that). The server runs until Close is
// called or ctx is done. It returns errs.Invalid for a non-loopback addr, and errs.Unavailable
// when addr is taken or another process has the store in dir open.
func Start(ctx context.Context, addr, dir string) (*Server, error) {
	const op = "devs3.Start"
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if err := checkLoopback(addr); err != nil {
		return nil, errs.E(op, errs.Invalid, "embedded S3 listens on loopback only", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, errs.E(op, errs.Internal, "cannot create the embedded S3 data directory", err)
	}
	db, err := bolt.Open(filepath.Join(dir, DBFile), 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, errs.E(op, errs.Unavailable, "embedded S3 data directory is in use by another process", err)
		}
		return nil, errs.E(op, errs.Internal, "cannot open the embedded S3 store", err)
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		db.Close()
		return nil, errs.E(op, errs.Unavailable, "embedded S3 address is not available", err)
	}
	faker := gofakes3.New(s3bolt.New(db), gofakes3.WithLogger(gofakes3.DiscardLog()))
	s := &Server{
		db: db,
		srv: &http.Server{
			Handler:           fixups(faker.Server()),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          log.New(io.Discard, "", 0), // gofakes3 double-writes headers on some errors
		},
		endpoint: ln.Addr().String(),
		served:   make(chan struct{}),
	}
	go func() {
		defer close(s.served)
		s.srv.Serve(ln) // returns http.ErrServerClosed after Close
	}()
	s.stop = context.AfterFunc(ctx, func() { s.Close() })
	return s, nil
}

// Endpoint returns host:port for S3 clients (plain HTTP, path-style buckets).
func (s *Server) Endpoint() string { return s.endpoint }

// AccessKey returns the access key to configure clients with. It is not checked.
func (s *Server) AccessKey() string { return "devs3" }

// SecretKey returns the secret key to configure clients with. It is not checked.
func (s *Server) SecretKey() string { return "devs3-not-a-secret" }

// Close stops serving, waits up to 5 s for requests in flight, and closes the store. It is
// safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.stop()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := s.srv.Shutdown(ctx)
		if err != nil {
			s.srv.Close()
		}
		<-s.served
		s.closeErr = errors.Join(err, s.db.Close())
		if s.closeErr != nil {
			s.closeErr = errs.E("devs3.Server.Close", errs.Internal, s.closeErr)
		}
	})
	return s.closeErr
}

func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return errors.New("not a loopback address: " + addr)
	}
	return nil
}

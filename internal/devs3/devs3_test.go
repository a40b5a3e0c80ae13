package devs3_test

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/concord-hie/concord/documents"
	"github.com/concord-hie/concord/documents/blobstest"
	"github.com/concord-hie/concord/internal/devs3"
	"github.com/concord-hie/concord/internal/errs"
)

func start(t *testing.T, dir string) *devs3.Server {
	t.Helper()
	s, err := devs3.Start(t.Context(), "127.0.0.1:0", dir)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func blobs(t *testing.T, s *devs3.Server, bucket string) *documents.S3Blobs {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	b, err := documents.NewS3Blobs(ctx, documents.S3Config{
		Endpoint: s.Endpoint(), AccessKey: s.AccessKey(), SecretKey: s.SecretKey(), Bucket: bucket,
	})
	if err != nil {
		t.Fatalf("NewS3Blobs: %v", err)
	}
	return b
}

func TestConformance(t *testing.T) {
	s := start(t, t.TempDir())
	n := 0
	blobstest.Run(t, func(t *testing.T) documents.Blobs {
		n++
		return blobs(t, s, "docs-"+string(rune('a'+n)))
	})
}

func TestDataSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	data, key := blobstest.Content(42, 1<<20)

	s := start(t, dir)
	b := blobs(t, s, "documents")
	if err := b.Put(t.Context(), key, bytes.NewReader(data), int64(len(data)), "application/pdf"); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s2 := start(t, dir)
	b2 := blobs(t, s2, "documents")
	rc, info, err := b2.Get(t.Context(), key, nil)
	if err != nil {
		t.Fatalf("Get after restart: %v", err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) || info.ContentType != "application/pdf" {
		t.Errorf("after restart: %d bytes, type %q; want the %d bytes put, application/pdf", len(got), info.ContentType, len(data))
	}
}

func TestStoreInUse(t *testing.T) {
	dir := t.TempDir()
	start(t, dir)
	// bbolt's file lock is per open file description, so a second open in this process
	// is refused just as another process would be.
	_, err := devs3.Start(t.Context(), "127.0.0.1:0", dir)
	if !errs.Is(err, errs.Unavailable) {
		t.Fatalf("second Start on the same dir: err = %v, want unavailable", err)
	}
}

func TestLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:9000", "example.com:9000"} {
		if _, err := devs3.Start(t.Context(), addr, t.TempDir()); !errs.Is(err, errs.Invalid) {
			t.Errorf("Start(%q): err = %v, want invalid", addr, err)
		}
	}
}

func TestCloseOnContextDone(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	s, err := devs3.Start(ctx, "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b := blobs(t, s, "documents")
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for b.Ping(t.Context()) == nil {
		if time.Now().After(deadline) {
			t.Fatal("server still answers 5 s after its context was cancelled")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close after cancel: %v", err)
	}
}

func TestNoEncryption(t *testing.T) {
	// gofakes3 does not encrypt; S3Blobs must notice rather than claim it.
	if blobs(t, start(t, t.TempDir()), "documents").Encrypted() {
		t.Error("Encrypted() = true against gofakes3")
	}
}

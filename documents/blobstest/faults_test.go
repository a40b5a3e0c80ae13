package blobstest_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/concord-hie/concord/documents"
	"github.com/concord-hie/concord/documents/blobstest"
	"github.com/concord-hie/concord/internal/devs3"
	"github.com/concord-hie/concord/internal/errs"
)

// setup returns S3Blobs on devs3 whose requests pass through a FaultTransport.
func setup(t *testing.T) (*documents.S3Blobs, *blobstest.FaultTransport) { return setupRetries(t, 1) }

func setupRetries(t *testing.T, retries int) (*documents.S3Blobs, *blobstest.FaultTransport) {
	t.Helper()
	s, err := devs3.Start(t.Context(), "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ft := &blobstest.FaultTransport{Base: http.DefaultTransport.(*http.Transport).Clone()}
	b, err := documents.NewS3Blobs(t.Context(), documents.S3Config{
		Endpoint: s.Endpoint(), AccessKey: s.AccessKey(), SecretKey: s.SecretKey(),
		Bucket: "documents", Transport: ft, MaxRetries: retries,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b, ft
}

func absent(t *testing.T, b documents.Blobs, key string) {
	t.Helper()
	if _, err := b.Stat(t.Context(), key); !errs.Is(err, errs.NotFound) {
		t.Errorf("Stat after the failed Put: err = %v, want not_found", err)
	}
}

func TestFaultDown(t *testing.T) {
	b, ft := setup(t)
	ft.ResetRequests()
	ft.Set(blobstest.Fault{Down: true})
	data, key := blobstest.Content(1, 4<<10)
	if err := b.Put(t.Context(), key, bytes.NewReader(data), int64(len(data)), ""); !errs.Is(err, errs.Unavailable) {
		t.Errorf("Put with S3 down: err = %v, want unavailable", err)
	}
	if err := b.Ping(t.Context()); !errs.Is(err, errs.Unavailable) {
		t.Errorf("Ping with S3 down: err = %v, want unavailable", err)
	}
	if n := ft.Requests(); n != 0 {
		t.Errorf("%d requests reached the server while it was down", n)
	}
	ft.Clear()
	absent(t, b, key)
	if err := b.Put(t.Context(), key, bytes.NewReader(data), int64(len(data)), ""); err != nil {
		t.Errorf("Put after S3 came back: %v", err)
	}
}

func TestFaultUploadCut(t *testing.T) {
	for _, tc := range []struct {
		name      string
		size      int
		cutAfter  int64
		times     int
		wantSaved bool
	}{
		{"single PUT", 1 << 20, 300 << 10, 0, false},
		{"every multipart part", 6 << 20, 1 << 20, 0, false},
		{"one part, retried", 11 << 20, 2 << 20, 2, true}, // minio-go retries a part from its buffer
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, ft := setupRetries(t, 3)
			data, key := blobstest.Content(uint64(tc.size), tc.size)
			ft.Set(blobstest.Fault{Method: http.MethodPut, CutRequest: true, CutRequestAfter: tc.cutAfter, Times: tc.times})
			err := b.Put(t.Context(), key, bytes.NewReader(data), int64(len(data)), "")
			ft.Clear()
			if tc.wantSaved {
				if err != nil {
					t.Fatalf("Put: %v", err)
				}
				rc, _, err := b.Get(t.Context(), key, nil)
				if err != nil {
					t.Fatal(err)
				}
				got, _ := io.ReadAll(rc)
				rc.Close()
				if !bytes.Equal(got, data) {
					t.Errorf("object differs after a retried part")
				}
				return
			}
			if err == nil {
				t.Fatal("Put succeeded through a cut connection")
			}
			absent(t, b, key)
		})
	}
}

func TestFaultDownloadCutAndCorrupt(t *testing.T) {
	b, ft := setup(t)
	data, key := blobstest.Content(3, 256<<10)
	if err := b.Put(t.Context(), key, bytes.NewReader(data), int64(len(data)), ""); err != nil {
		t.Fatal(err)
	}

	ft.Set(blobstest.Fault{Method: http.MethodGet, CutResponse: true, CutResponseAfter: 1000})
	rc, _, err := b.Get(t.Context(), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err == nil || len(got) != 1000 {
		t.Errorf("cut download: %d bytes, err %v; want 1000 bytes then an error", len(got), err)
	}

	ft.Set(blobstest.Fault{Method: http.MethodGet, Corrupt: true, CorruptAt: 200 << 10})
	rc, info, err := b.Get(t.Context(), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(documents.VerifyingReader(rc, key, info.Size))
	rc.Close()
	if !errors.Is(err, documents.ErrDigestMismatch) {
		t.Errorf("corrupted download through VerifyingReader: err = %v, want digest mismatch", err)
	}
	if len(got) >= len(data) {
		t.Errorf("corrupted download released all %d bytes", len(got))
	}
	ft.Clear()
}

func TestFaultDelay(t *testing.T) {
	b, ft := setup(t)
	ft.Set(blobstest.Fault{Delay: 5 * time.Second})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, key := blobstest.Content(4, 1)
	if _, err := b.Stat(ctx, key); !errs.Is(err, errs.Unavailable) {
		t.Errorf("Stat past its deadline: err = %v, want unavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Stat returned after %v; the deadline was 100 ms", d)
	}
}

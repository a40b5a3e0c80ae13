package documents_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/concord-hie/concord/documents"
	"github.com/concord-hie/concord/documents/blobstest"
	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/internal/testkit"
)

// newS3 returns S3Blobs on a fresh bucket of the test S3 server (versitygw under make test).
func newS3(t *testing.T) *documents.S3Blobs { return newS3WithEnv(t, testkit.S3(t)) }

func newS3B(b *testing.B) *documents.S3Blobs {
	env := testkit.S3(b)
	s, err := documents.NewS3Blobs(b.Context(), documents.S3Config{
		Endpoint: env.Endpoint, AccessKey: env.AccessKey, SecretKey: env.SecretKey,
		Bucket: env.Bucket, Region: env.Region,
	})
	if err != nil {
		b.Fatalf("NewS3Blobs: %v", err)
	}
	return s
}

func newS3WithEnv(t *testing.T, env testkit.S3Env) *documents.S3Blobs {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	b, err := documents.NewS3Blobs(ctx, documents.S3Config{
		Endpoint: env.Endpoint, AccessKey: env.AccessKey, SecretKey: env.SecretKey,
		Bucket: env.Bucket, Region: env.Region,
	})
	if err != nil {
		t.Fatalf("NewS3Blobs: %v", err)
	}
	return b
}

func TestS3BlobsConformance(t *testing.T) {
	blobstest.Run(t, func(t *testing.T) documents.Blobs { return newS3(t) })
}

func TestS3BlobsUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err = documents.NewS3Blobs(ctx, documents.S3Config{Endpoint: addr, AccessKey: "a", SecretKey: "b", Bucket: "documents"})
	if !errs.Is(err, errs.Unavailable) {
		t.Fatalf("NewS3Blobs on a closed port: err = %v, want unavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("NewS3Blobs took %v to give up", d)
	}
}

func TestS3BlobsPresignGet(t *testing.T) {
	b := newS3(t)
	data, key := blobstest.Content(9, 64<<10)
	if err := b.Put(t.Context(), key, bytes.NewReader(data), int64(len(data)), "application/pdf"); err != nil {
		t.Fatal(err)
	}
	u, err := b.PresignGet(t.Context(), key, time.Minute)
	if err != nil {
		t.Fatalf("PresignGet: %v", err)
	}
	resp, err := http.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, data) {
		t.Errorf("GET presigned URL: %d, %d bytes; want 200 and the %d bytes", resp.StatusCode, len(got), len(data))
	}
	// The same URL with a tampered signature must not work.
	q := u.Query()
	q.Set("X-Amz-Signature", strings.Repeat("0", 64))
	u.RawQuery = q.Encode()
	resp2, err := http.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusForbidden {
		t.Errorf("GET with a forged signature: %d, want 403", resp2.StatusCode)
	}
	for _, ttl := range []time.Duration{0, 8 * 24 * time.Hour} {
		if _, err := b.PresignGet(t.Context(), key, ttl); !errs.Is(err, errs.Invalid) {
			t.Errorf("PresignGet ttl %v: err = %v, want invalid", ttl, err)
		}
	}
}

func TestS3BlobsAbortStaleUploads(t *testing.T) {
	env := testkit.S3(t)
	b := newS3WithEnv(t, env)
	c, err := minio.New(env.Endpoint, &minio.Options{
		Creds: credentials.NewStaticV4(env.AccessKey, env.SecretKey, ""), Region: env.Region, BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatal(err)
	}
	_, key := blobstest.Content(11, 10)
	// An upload a crashed writer left behind.
	if _, err := (minio.Core{Client: c}).NewMultipartUpload(t.Context(), env.Bucket, key, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if n, err := b.AbortStaleUploads(t.Context(), time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Errorf("AbortStaleUploads(an hour ago) = %d, %v; want 0 (the upload is fresh)", n, err)
	}
	if n, err := b.AbortStaleUploads(t.Context(), time.Now().Add(time.Hour)); err != nil || n != 1 {
		t.Errorf("AbortStaleUploads(an hour ahead) = %d, %v; want 1", n, err)
	}
	for u := range c.ListIncompleteUploads(t.Context(), env.Bucket, "", true) {
		t.Errorf("upload left after AbortStaleUploads: %+v", u)
	}
}

func TestS3BlobsEncryptionDetected(t *testing.T) {
	// versitygw v1.8.0's posix backend: record what the probe found, and check that the
	// answer is consistent with a real SSE-S3 write.
	env := testkit.S3(t)
	b := newS3WithEnv(t, env)
	t.Logf("server-side encryption on %s: %v", env.Endpoint, b.Encrypted())
	forced, err := documents.NewS3Blobs(t.Context(), documents.S3Config{
		Endpoint: env.Endpoint, AccessKey: env.AccessKey, SecretKey: env.SecretKey,
		Bucket: env.Bucket, Region: env.Region, SSE: documents.SSEOn,
	})
	if err != nil {
		t.Fatal(err)
	}
	data, key := blobstest.Content(12, 100)
	err = forced.Put(t.Context(), key, bytes.NewReader(data), int64(len(data)), "")
	if b.Encrypted() && err != nil {
		t.Errorf("probe said SSE works, but an SSE Put failed: %v", err)
	}
	t.Logf("SSE-S3 Put forced: err = %v", err)
}

func TestS3BlobsServerErrors(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
		want   errs.Code
	}{
		{http.StatusServiceUnavailable, "SlowDown", errs.Unavailable},
		{http.StatusInternalServerError, "InternalError", errs.Unavailable},
		{http.StatusBadGateway, "BadGateway", errs.Unavailable},
		{http.StatusForbidden, "SignatureDoesNotMatch", errs.Internal},
	} {
		t.Run(tc.code, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(tc.status)
				fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>x</Message></Error>`, tc.code)
			}))
			defer srv.Close()
			_, err := documents.NewS3Blobs(t.Context(), documents.S3Config{
				Endpoint: strings.TrimPrefix(srv.URL, "http://"), AccessKey: "a", SecretKey: "b", Bucket: "documents", MaxRetries: 1,
			})
			if got := errs.CodeOf(err); err == nil || got != tc.want {
				t.Errorf("NewS3Blobs against a server answering %d %s: err = %v, want %v", tc.status, tc.code, err, tc.want)
			}
		})
	}
}

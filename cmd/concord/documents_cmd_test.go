package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/concord-hie/concord/documents"
	"github.com/concord-hie/concord/internal/testkit"
)

// TestDocumentsCheck runs `concord documents check` against a database and bucket taken
// through the failures a backup and restore can cause: an extra object (clean, exit 0), an
// object replaced by other bytes of the same size (found only with --verify-bytes), and an
// object lost behind a stored document (dangling, exit 1). The output names documents and
// keys, never the content.
func TestDocumentsCheck(t *testing.T) {
	ctx := context.Background()
	dbURL := testkit.DatabaseURL(t)
	s3 := testkit.S3(t)
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	blobs, err := documents.NewS3Blobs(ctx, documents.S3Config{Endpoint: s3.Endpoint, AccessKey: s3.AccessKey, SecretKey: s3.SecretKey,
		Bucket: s3.Bucket, Region: s3.Region, SSE: documents.SSEOff})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO directory_members (id, name, system) VALUES ('harbor', 'Harbor', 'urn:oid:2.16.840.1.113883.3.77')`); err != nil {
		t.Fatal(err)
	}
	const phi = "Patient: Maria Lopez-Hernandez"
	store := func(doc string, body []byte) string {
		t.Helper()
		key := documents.KeyOf(body)
		if err := blobs.Put(ctx, key, bytes.NewReader(body), int64(len(body)), "text/plain"); err != nil {
			t.Fatal(err)
		}
		if _, err := pool.Exec(ctx, `INSERT INTO documents_metadata (id, member_id, origin, status) VALUES ($1, 'harbor', 'clinical', 'current')`, doc); err != nil {
			t.Fatal(err)
		}
		if _, err := pool.Exec(ctx, `INSERT INTO documents_contents (binary_id, document_id, member_id, object_key, size, sha1, content_type)
			VALUES ($1, $2, 'harbor', $3, $4, '', 'text/plain')`, "bin-"+doc, doc, key, len(body)); err != nil {
			t.Fatal(err)
		}
		return key
	}
	run := func(args ...string) (string, error) {
		var out, errb bytes.Buffer
		err := runDocuments(ctx, append(append([]string{"check"}, args...), "--database-url", dbURL, "--s3-endpoint", s3.Endpoint,
			"--s3-access-key", s3.AccessKey, "--s3-secret-key", s3.SecretKey, "--s3-bucket", s3.Bucket, "--s3-region", s3.Region), &out, &errb)
		got := out.String() + errb.String()
		if strings.Contains(got, "Lopez") {
			t.Errorf("documents check printed content:\n%s", got)
		}
		return got, err
	}

	first := []byte(phi + "\nDischarge summary: pneumonia, improving.\n")
	second := []byte(phi + "\nLab note: potassium 4.1 mmol/L, normal.\n")
	lostKey := store("doc-discharge", first)
	changedKey := store("doc-lab", second)

	// Clean, and an orphan (a mirror taken after the dump) changes nothing.
	out, err := run()
	if err != nil || !strings.Contains(out, "\nOK\n") || !strings.Contains(out, "dangling rows: 0 (missing objects: 0)") {
		t.Fatalf("clean store: %v\n%s", err, out)
	}
	extra := []byte("an object no row names")
	if err := blobs.Put(ctx, documents.KeyOf(extra), bytes.NewReader(extra), int64(len(extra)), "text/plain"); err != nil {
		t.Fatal(err)
	}
	out, err = run("--verify-bytes")
	if err != nil || !strings.Contains(out, "orphan objects: 1 (22 bytes)") || !strings.Contains(out, "concord serve") || !strings.Contains(out, "\nOK\n") {
		t.Fatalf("orphan: want exit 0 and the orphan counted: %v\n%s", err, out)
	}

	// Other bytes of the same size under the lab note's key: only hashing finds them.
	bad := bytes.Clone(second)
	bad[len(bad)-3] = '9'
	c, err := minio.New(s3.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(s3.AccessKey, s3.SecretKey, ""),
		Region: s3.Region, BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutObject(ctx, s3.Bucket, changedKey, bytes.NewReader(bad), int64(len(bad)), minio.PutObjectOptions{DisableMultipart: true}); err != nil {
		t.Fatal(err)
	}
	if out, err := run(); err != nil {
		t.Fatalf("same-size overwrite without --verify-bytes: want exit 0: %v\n%s", err, out)
	}
	out, err = run("--verify-bytes")
	if !errors.Is(err, errReported) || !strings.Contains(out, "digest-mismatch  document doc-lab binary bin-doc-lab object "+changedKey) ||
		!strings.Contains(out, "digest-mismatch rows: 1") || !strings.Contains(out, "FAILED") {
		t.Fatalf("same-size overwrite with --verify-bytes: want the mismatch and exit 1: %v\n%s", err, out)
	}

	// The restore-order failure: the database names bytes the bucket lacks.
	if err := blobs.Delete(ctx, lostKey); err != nil {
		t.Fatal(err)
	}
	out, err = run("--json")
	if !errors.Is(err, errReported) {
		t.Fatalf("dangling: want exit 1, got %v\n%s", err, out)
	}
	var problems []problemLine
	var sum summaryLine
	for line := range strings.Lines(out) {
		var v struct {
			problemLine
			Summary *summaryLine `json:"summary"`
		}
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("--json line %q: %v", line, err)
		}
		if v.Summary != nil {
			sum = *v.Summary
			continue
		}
		problems = append(problems, v.problemLine)
	}
	want := problemLine{Problem: "dangling", DocumentID: "doc-discharge", BinaryID: "bin-doc-discharge", ObjectKey: lostKey, Size: int64(len(first)), ObjectSize: -1}
	if len(problems) != 1 || problems[0] != want {
		t.Errorf("--json problems %+v, want [%+v]", problems, want)
	}
	if sum.OK || sum.Dangling != 1 || sum.MissingObjects != 1 || sum.Orphans != 1 || sum.Rows != 2 || sum.BytesVerified {
		t.Errorf("--json summary %+v", sum)
	}

	// A bucket that does not exist is a configuration error, and the check creates nothing.
	var errMissing bytes.Buffer
	err = runDocuments(ctx, []string{"check", "--database-url", dbURL, "--s3-endpoint", s3.Endpoint, "--s3-access-key", s3.AccessKey,
		"--s3-secret-key", s3.SecretKey, "--s3-bucket", s3.Bucket + "-absent", "--s3-region", s3.Region}, &errMissing, &errMissing)
	if err == nil || !strings.Contains(err.Error(), "CONCORD_S3_BUCKET") || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing bucket: want a CONCORD_S3_BUCKET error, got %v", err)
	}
	if ok, err := c.BucketExists(ctx, s3.Bucket+"-absent"); err != nil || ok {
		t.Errorf("documents check created the missing bucket (exists=%v, %v)", ok, err)
	}

	if _, err := run("--help"); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("check --help: %v", err)
	}
	var errb bytes.Buffer
	if err := runDocuments(ctx, []string{"verify"}, &errb, &errb); !errors.Is(err, errReported) || !strings.Contains(errb.String(), "usage: concord documents check") {
		t.Errorf("unknown subcommand: %v %s", err, errb.String())
	}
}

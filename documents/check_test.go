package documents_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/concord-hie/concord/documents"
)

// checkAll runs Check and returns its report and the problems it named.
func checkAll(t *testing.T, e *env, verify bool) (documents.CheckReport, []documents.Problem) {
	t.Helper()
	var ps []documents.Problem
	rep, err := e.svc.Check(t.Context(), documents.CheckOptions{VerifyBytes: verify, Problem: func(p documents.Problem) error {
		ps = append(ps, p)
		return nil
	}})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return rep, ps
}

// storeDoc ingests a text document of member m and returns its id and object key.
func storeDoc(t *testing.T, e *env, m string, data []byte) (id, key string) {
	t.Helper()
	st, err := e.ingest(t, m, docRef(e.patients[m], "text/plain", data, ""))
	if err != nil {
		t.Fatal(err)
	}
	return st.ID, documents.KeyOf(data)
}

// putRaw writes data under key straight to the test bucket, past Blobs' digest check, as
// a faulty disk, a bad restore or an operator's mistake would.
func putRaw(t *testing.T, e *env, key string, data []byte) {
	t.Helper()
	c, err := minio.New(os.Getenv("CONCORD_TEST_S3_ENDPOINT"), &minio.Options{
		Creds:        credentials.NewStaticV4(os.Getenv("CONCORD_TEST_S3_ACCESS_KEY"), os.Getenv("CONCORD_TEST_S3_SECRET_KEY"), ""),
		Region:       "us-east-1",
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutObject(t.Context(), e.blobs.Bucket(), key, bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{ContentType: "text/plain", DisableMultipart: true}); err != nil {
		t.Fatal(err)
	}
}

func TestCheckCleanStore(t *testing.T) {
	e := setup(t, documents.Config{})
	shared := note(3000, 1)
	storeDoc(t, e, "a", shared)
	storeDoc(t, e, "b", shared) // the same bytes: one object, two rows
	storeDoc(t, e, "a", note(5000, 2))
	for _, verify := range []bool{false, true} {
		rep, ps := checkAll(t, e, verify)
		want := documents.CheckReport{Objects: 2, Keys: 2, Rows: 3, Grace: documents.DefaultGrace}
		if verify {
			want.Verified = 2
		}
		if rep != want || !rep.OK() || len(ps) != 0 {
			t.Errorf("verify=%v: report %+v, problems %v; want %+v and none", verify, rep, ps, want)
		}
	}
	if n, err := e.svc.DanglingReferences(t.Context()); err != nil || n != 0 {
		t.Errorf("dangling = %d, %v", n, err)
	}
}

// TestCheckDanglingAfterObjectLost is the restore-order failure: the database names a
// document whose object the bucket does not hold.
func TestCheckDanglingAfterObjectLost(t *testing.T) {
	e := setup(t, documents.Config{})
	lost := note(2000, 3)
	idA, key := storeDoc(t, e, "a", lost)
	idB, _ := storeDoc(t, e, "b", lost)
	storeDoc(t, e, "a", note(2000, 4))
	if err := e.blobs.Delete(t.Context(), key); err != nil {
		t.Fatal(err)
	}
	for _, verify := range []bool{false, true} {
		rep, ps := checkAll(t, e, verify)
		if rep.OK() || rep.Dangling != 2 || rep.MissingObjects != 1 || rep.Objects != 1 || rep.Keys != 2 || rep.Rows != 3 ||
			rep.SizeMismatches != 0 || rep.DigestMismatches != 0 {
			t.Errorf("verify=%v: report %+v; want 2 dangling rows of 1 missing object", verify, rep)
		}
		var docs []string
		for _, p := range ps {
			if p.Kind != documents.Dangling || p.Key != key || p.ObjectSize != -1 || p.Size != int64(len(lost)) || p.BinaryID == "" {
				t.Errorf("problem %+v", p)
			}
			docs = append(docs, p.DocumentID)
		}
		want := []string{idA, idB}
		slices.Sort(docs)
		slices.Sort(want)
		if !slices.Equal(docs, want) {
			t.Errorf("verify=%v: dangling documents %v, want %v", verify, docs, want)
		}
	}
	if n, err := e.svc.DanglingReferences(t.Context()); err != nil || n != 1 {
		t.Errorf("DanglingReferences = %d, %v; want 1", n, err)
	}
}

// TestCheckDigestMismatchNeedsVerifyBytes overwrites an object with other bytes of the
// same size: the listing cannot tell, only hashing does.
func TestCheckDigestMismatchNeedsVerifyBytes(t *testing.T) {
	e := setup(t, documents.Config{})
	data := note(4000, 5)
	id, key := storeDoc(t, e, "a", data)
	storeDoc(t, e, "b", note(4000, 6))
	bad := bytes.Clone(data)
	bad[len(bad)/2] ^= 0x20
	putRaw(t, e, key, bad)

	rep, ps := checkAll(t, e, false)
	if !rep.OK() || len(ps) != 0 || rep.Verified != 0 {
		t.Errorf("without --verify-bytes: report %+v, problems %v; want clean", rep, ps)
	}
	rep, ps = checkAll(t, e, true)
	want := []documents.Problem{{Kind: documents.DigestMismatch, DocumentID: id, BinaryID: ps0(ps).BinaryID, Key: key, Size: 4000, ObjectSize: 4000}}
	if rep.OK() || rep.DigestMismatches != 1 || rep.Verified != 2 || rep.SizeMismatches != 0 || !slices.Equal(ps, want) {
		t.Errorf("with --verify-bytes: report %+v, problems %+v; want %+v", rep, ps, want)
	}
}

func ps0(ps []documents.Problem) documents.Problem {
	if len(ps) == 0 {
		return documents.Problem{}
	}
	return ps[0]
}

// TestCheckSizeMismatch replaces an object with a shorter one: the listing shows it.
func TestCheckSizeMismatch(t *testing.T) {
	e := setup(t, documents.Config{})
	data := note(3000, 7)
	id, key := storeDoc(t, e, "a", data)
	putRaw(t, e, key, data[:2999])
	rep, ps := checkAll(t, e, false)
	if rep.OK() || rep.SizeMismatches != 1 || len(ps) != 1 ||
		ps[0] != (documents.Problem{Kind: documents.SizeMismatch, DocumentID: id, BinaryID: ps[0].BinaryID, Key: key, Size: 3000, ObjectSize: 2999}) {
		t.Errorf("report %+v, problems %+v; want one size mismatch of %s", rep, ps, id)
	}
	rep, _ = checkAll(t, e, true)
	if rep.SizeMismatches != 1 || rep.DigestMismatches != 1 {
		t.Errorf("with --verify-bytes: report %+v; want a size and a digest mismatch", rep)
	}
}

func TestCheckCountsOrphansAndStaysClean(t *testing.T) {
	e := setup(t, documents.Config{})
	storeDoc(t, e, "a", note(1000, 8))
	extra := note(700, 9)
	if err := e.blobs.Put(t.Context(), documents.KeyOf(extra), bytes.NewReader(extra), int64(len(extra)), "text/plain"); err != nil {
		t.Fatal(err)
	}
	for _, verify := range []bool{false, true} {
		rep, ps := checkAll(t, e, verify)
		if !rep.OK() || len(ps) != 0 || rep.Orphans != 1 || rep.OrphanBytes != 700 || rep.Objects != 2 || rep.Keys != 1 {
			t.Errorf("verify=%v: report %+v, problems %v; want clean with 1 orphan of 700 bytes", verify, rep, ps)
		}
		if verify && rep.Verified != 1 {
			t.Errorf("verified %d objects, want 1: an orphan is counted, not read", rep.Verified)
		}
	}
}

// TestCheckMergesAcrossBatches interleaves rows without objects, rows with objects and
// orphans over more keys than one database batch holds.
func TestCheckMergesAcrossBatches(t *testing.T) {
	e := setup(t, documents.Config{})
	ctx := t.Context()
	const n = 1203 // more than two batches of 500
	var present, orphans int
	for i := range n {
		data := fmt.Appendf(nil, "object %d", i)
		key := documents.KeyOf(data)
		if _, err := e.pool.Exec(ctx, `INSERT INTO documents_contents(binary_id, object_key, size, sha1, content_type)
			VALUES ($1, $2, $3, '', 'text/plain')`, fmt.Sprint("bin-", i), key, len(data)); err != nil {
			t.Fatal(err)
		}
		if i%97 == 0 {
			present++
			if err := e.blobs.Put(ctx, key, bytes.NewReader(data), int64(len(data)), "text/plain"); err != nil {
				t.Fatal(err)
			}
		}
		if i%131 == 0 { // bytes no row names, hashed near the others
			orphans++
			o := fmt.Appendf(nil, "orphan %d", i)
			if err := e.blobs.Put(ctx, documents.KeyOf(o), bytes.NewReader(o), int64(len(o)), "text/plain"); err != nil {
				t.Fatal(err)
			}
		}
	}
	// However many reads are in flight, the report is the same and the problems come in
	// key order: the missing objects are each stat-ed again, the present ones hashed.
	var first []documents.Problem
	for _, parallel := range []int{1, 3, 16} {
		var ps []documents.Problem
		rep, err := e.svc.Check(ctx, documents.CheckOptions{VerifyBytes: true, Parallel: parallel, Problem: func(p documents.Problem) error {
			ps = append(ps, p)
			return nil
		}})
		if err != nil {
			t.Fatalf("parallel %d: %v", parallel, err)
		}
		missing := int64(n - present)
		if rep.Keys != n || rep.Rows != n || rep.Objects != int64(present+orphans) || rep.Verified != int64(present) ||
			rep.Dangling != missing || rep.MissingObjects != missing || rep.Orphans != int64(orphans) || int64(len(ps)) != missing {
			t.Errorf("parallel %d: report %+v with %d problems; want %d keys, %d present, %d orphans", parallel, rep, len(ps), n, present, orphans)
		}
		if !slices.IsSortedFunc(ps, func(a, b documents.Problem) int { return strings.Compare(a.Key, b.Key) }) {
			t.Errorf("parallel %d: problems are not in key order", parallel)
		}
		if first == nil {
			first = ps
		} else if !slices.Equal(ps, first) {
			t.Errorf("parallel %d: problems differ from one read at a time", parallel)
		}
	}
}

func TestCheckStopsOnProblemError(t *testing.T) {
	e := setup(t, documents.Config{})
	_, key := storeDoc(t, e, "a", note(900, 10))
	storeDoc(t, e, "a", note(900, 11))
	if err := e.blobs.Delete(t.Context(), key); err != nil {
		t.Fatal(err)
	}
	stop := errors.New("reader went away")
	calls := 0
	_, err := e.svc.Check(t.Context(), documents.CheckOptions{Problem: func(documents.Problem) error { calls++; return stop }})
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("err = %v after %d calls; want the callback's error after 1", err, calls)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := e.svc.Check(ctx, documents.CheckOptions{}); err == nil {
		t.Error("Check with a cancelled context succeeded")
	}
}

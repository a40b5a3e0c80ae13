package eval

import (
	"bytes"
	"context"
	"encoding/csv"
	"strings"
	"testing"

	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/mpi"
)

func TestLinkNDJSON(t *testing.T) {
	ds := Generate(GenOptions{Seed: 3, Persons: 800})
	var in bytes.Buffer
	if err := WriteNDJSON(&in, ds); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(in.String(), "\n"), "\n")
	// a malformed line in the middle: reported, the rest still linked
	bad := len(lines) / 2
	lines = append(lines[:bad], append([]string{`{"resourceType":"Patient",`}, lines[bad:]...)...)
	var out, rev bytes.Buffer
	st, err := mpi.LinkNDJSON(context.Background(), strings.NewReader(strings.Join(lines, "\n")), &out, &rev, mpi.LinkOptions{Workers: 2})
	if !errs.Is(err, errs.Invalid) {
		t.Fatalf("err = %v, want Invalid for the malformed line", err)
	}
	if len(st.BadLines) != 1 || st.BadLines[0] != bad+1 {
		t.Fatalf("bad lines %v, want [%d]", st.BadLines, bad+1)
	}
	rows, err := csv.NewReader(&out).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(rows), len(ds.Inputs)+1; got != want {
		t.Fatalf("%d CSV rows, want %d", got, want)
	}
	if h := strings.Join(rows[0], ","); h != "system,value,person" {
		t.Fatalf("header %q", h)
	}
	// one row per record, in input order (the malformed line has none)
	for i, in := range ds.Inputs {
		if r := rows[i+1]; r[0] != in.Source.System || r[1] != in.Source.Value {
			t.Fatalf("row %d is %v, want the record of line %d", i+1, r[:2], i+1)
		}
	}
	// the persons agree with the ground truth well: pairwise precision on the CSV
	ent := map[string]int32{}
	for i, in := range ds.Inputs {
		ent[in.Source.System+"|"+in.Source.Value] = ds.Entity[i]
	}
	byPerson := map[string][]int32{}
	for _, r := range rows[1:] {
		e, ok := ent[r[0]+"|"+r[1]]
		if !ok {
			t.Fatalf("unknown source %v", r[:2])
		}
		byPerson[r[2]] = append(byPerson[r[2]], e)
	}
	var tp, fp int
	for _, es := range byPerson {
		for x := range es {
			for y := x + 1; y < len(es); y++ {
				if es[x] == es[y] {
					tp++
				} else {
					fp++
				}
			}
		}
	}
	if tp == 0 || float64(fp)/float64(tp+fp) > 0.001 {
		t.Errorf("linked pairs: %d right, %d wrong", tp, fp)
	}
	if !strings.HasPrefix(rev.String(), "system,value,other_system,other_value,score,reason\n") {
		t.Errorf("review CSV header missing: %.80q", rev.String())
	}
}

func TestLinkNDJSONCancelled(t *testing.T) {
	ds := Generate(GenOptions{Seed: 4, Persons: 2000})
	var in bytes.Buffer
	if err := WriteNDJSON(&in, ds); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out bytes.Buffer
	if _, err := mpi.LinkNDJSON(ctx, &in, &out, nil, mpi.LinkOptions{Workers: 2}); !errs.Is(err, errs.Unavailable) {
		t.Fatalf("err = %v, want Unavailable for a cancelled context", err)
	}
}

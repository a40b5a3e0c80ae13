package eval

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/concord-hie/concord/internal/errs"
	"github.com/concord-hie/concord/mpi"
)

// Dataset is a labelled population: inputs and the true entity of each.
type Dataset struct {
	Name   string
	Inputs []mpi.Input
	Entity []int32 // true person of each input
	// Side is 0 or 1 for a two-file link (FEBRL4): only cross-side pairs count. Nil for
	// deduplication.
	Side []uint8
	// Kind classifies a pair of distinct true persons (twin, jrsr, namesake ...) for
	// overlay reporting; nil means "other" for every pair.
	Kind func(a, b int32) string
	// Lenient marks national identifiers that are not US SSNs (FEBRL).
	Lenient bool
}

// ReadFEBRL parses a FEBRL CSV (rec_id, given_name, surname, street_number, address_1,
// address_2, suburb, postcode, state, date_of_birth, soc_sec_id). ids maps each rec-N to
// an entity number and is shared between the two files of a link. It returns
// errs.Invalid for a row with the wrong number of fields.
func ReadFEBRL(r io.Reader, ids map[string]int32, ds *Dataset, side uint8) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		t := strings.TrimRight(sc.Text(), "\r")
		if line == 1 || t == "" {
			continue
		}
		f := strings.Split(t, ",")
		if len(f) != 11 {
			return errs.E("eval.ReadFEBRL", errs.Invalid, "FEBRL row does not have 11 fields")
		}
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		id := f[0]
		parts := strings.Split(id, "-")
		if len(parts) < 3 {
			return errs.E("eval.ReadFEBRL", errs.Invalid, "FEBRL rec_id is malformed")
		}
		key := parts[1]
		e, ok := ids[key]
		if !ok {
			e = int32(len(ids))
			ids[key] = e
		}
		in := mpi.Input{Family: f[2], City: f[6], State: f[8], PostalCode: f[7], BirthDate: f[9], SSN: f[10]}
		if f[1] != "" {
			in.Given = []string{f[1]}
		}
		street := strings.TrimSpace(f[3] + " " + f[4])
		if street != "" {
			in.Lines = []string{street}
		}
		ds.Inputs = append(ds.Inputs, in)
		ds.Entity = append(ds.Entity, e)
		if ds.Side != nil || side == 1 {
			for len(ds.Side) < len(ds.Inputs)-1 {
				ds.Side = append(ds.Side, 0)
			}
			ds.Side = append(ds.Side, side)
		}
	}
	if err := sc.Err(); err != nil {
		return errs.E("eval.ReadFEBRL", errs.Invalid, err)
	}
	return nil
}

// LoadFEBRL loads FEBRL dataset 1, 2, 3 (deduplication) or 4 (4a × 4b link) from dir.
// It returns errs.NotFound when a file is missing.
func LoadFEBRL(dir string, n int) (*Dataset, error) {
	ds := &Dataset{Name: "febrl" + string(rune('0'+n)), Lenient: true}
	ids := map[string]int32{}
	files := []string{"dataset" + string(rune('0'+n)) + ".csv"}
	if n == 4 {
		files = []string{"dataset4a.csv", "dataset4b.csv"}
	}
	for side, name := range files {
		fh, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return nil, errs.E("eval.LoadFEBRL", errs.NotFound, "FEBRL file missing", err)
		}
		err = ReadFEBRL(fh, ids, ds, uint8(side))
		fh.Close()
		if err != nil {
			return nil, err
		}
	}
	return ds, nil
}

// FEBRLGuards are the guards used on FEBRL. FEBRL has no families, and its corruption
// replaces whole given names, which makes duplicates look like twins or generations; the
// relative guards are for populations that do have relatives (the HIE suite).
const FEBRLGuards = mpi.GuardSSN | mpi.GuardMRN | mpi.GuardPlaceholder

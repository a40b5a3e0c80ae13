package store

import (
	"encoding/binary"
	"errors"

	"github.com/concord-hie/concord/mpi"
)

// featuresVersion is the first byte of every encoded features value. A stored value of
// another version is ignored (the record is re-normalized from its demographics), so a
// change of the encoding below needs a new version and nothing else.
const featuresVersion = 1

// featureFields lists, in encoding order, the exported fields of mpi.Record that
// encodeFeatures writes. A test compares it with the struct, so a field added to the
// engine's Record fails the build's tests until the codec learns it.
var featureFields = []string{"Source", "Given", "Middle", "Family", "FamilyParts", "Generation",
	"GivenGroups", "GivenHead", "GivenDM", "FamilyDM", "GivenNY", "FamilyNY", "NameKey",
	"DOB", "Year", "Month", "Day", "Sex", "SSN", "SSNLast", "Phone", "House", "Street", "Unit",
	"City", "State", "ZIP", "AddrKey", "IDs", "Flags"}

// encodeFeatures serializes a normalized record (before Model.Prepare: the term-frequency
// features are not stored, they come from the model in use) into the compact form kept in
// mpi_source_records.features, so an online match reads its candidates without parsing
// and normalizing their FHIR demographics again. decodeFeatures(encodeFeatures(r)) equals
// r field for field. The value holds PHI, like the demographics it comes from.
func encodeFeatures(r *mpi.Record) []byte {
	b := make([]byte, 0, 256)
	b = append(b, featuresVersion)
	str := func(s string) { b = binary.AppendUvarint(b, uint64(len(s))); b = append(b, s...) }
	str(r.Source.System)
	str(r.Source.Value)
	str(r.Given)
	str(r.Middle)
	str(r.Family)
	b = binary.AppendUvarint(b, uint64(len(r.FamilyParts)))
	for _, p := range r.FamilyParts {
		str(p)
	}
	b = append(b, byte(r.Generation))
	b = binary.AppendUvarint(b, uint64(len(r.GivenGroups)))
	for _, g := range r.GivenGroups {
		b = binary.AppendUvarint(b, uint64(g))
	}
	b = binary.AppendUvarint(b, uint64(r.GivenHead))
	str(r.GivenDM[0])
	str(r.GivenDM[1])
	str(r.FamilyDM[0])
	str(r.FamilyDM[1])
	str(r.GivenNY)
	str(r.FamilyNY)
	str(r.NameKey)
	str(r.DOB)
	b = binary.AppendVarint(b, int64(r.Year))
	b = append(b, r.Month, r.Day, byte(r.Sex))
	str(r.SSN)
	str(r.SSNLast)
	str(r.Phone)
	str(r.House)
	str(r.Street)
	str(r.Unit)
	str(r.City)
	str(r.State)
	str(r.ZIP)
	str(r.AddrKey)
	b = binary.AppendUvarint(b, uint64(len(r.IDs)))
	for _, id := range r.IDs {
		str(id.System)
		str(id.Value)
	}
	b = binary.AppendUvarint(b, uint64(r.Flags))
	return b
}

var errFeatures = errors.New("mpi/store: malformed features")

// decodeFeatures fills r from a value written by encodeFeatures. Every string of r shares
// one allocation (a copy of data), so data may be reused afterwards. It returns an error
// for another version or a malformed value; r is then unspecified.
func decodeFeatures(data []byte, r *mpi.Record) error {
	if len(data) == 0 || data[0] != featuresVersion {
		return errFeatures
	}
	s := string(data) // one copy; the fields below are substrings of it
	i := 1
	bad := false
	uv := func() uint64 {
		v, n := binary.Uvarint(data[i:])
		if n <= 0 {
			bad = true
			return 0
		}
		i += n
		return v
	}
	str := func() string {
		n := uv()
		if bad || n > uint64(len(data)-i) {
			bad = true
			return ""
		}
		v := s[i : i+int(n)]
		i += int(n)
		return v
	}
	u8 := func() uint8 {
		if i >= len(data) {
			bad = true
			return 0
		}
		i++
		return data[i-1]
	}
	count := func() int {
		n := uv()
		if n > uint64(len(data)-i) { // every element takes at least one byte
			bad = true
			return 0
		}
		return int(n)
	}
	*r = mpi.Record{}
	r.Source.System = str()
	r.Source.Value = str()
	r.Given = str()
	r.Middle = str()
	r.Family = str()
	if n := count(); n > 0 {
		r.FamilyParts = make([]string, n)
		for k := range r.FamilyParts {
			r.FamilyParts[k] = str()
		}
	}
	r.Generation = mpi.Generation(u8())
	if n := count(); n > 0 {
		r.GivenGroups = make([]uint32, n)
		for k := range r.GivenGroups {
			r.GivenGroups[k] = uint32(uv())
		}
	}
	r.GivenHead = uint32(uv())
	r.GivenDM[0], r.GivenDM[1] = str(), str()
	r.FamilyDM[0], r.FamilyDM[1] = str(), str()
	r.GivenNY = str()
	r.FamilyNY = str()
	r.NameKey = str()
	r.DOB = str()
	y, n := binary.Varint(data[min(i, len(data)):])
	if n <= 0 {
		return errFeatures
	}
	i += n
	r.Year = int16(y)
	r.Month, r.Day, r.Sex = u8(), u8(), mpi.Sex(u8())
	r.SSN = str()
	r.SSNLast = str()
	r.Phone = str()
	r.House = str()
	r.Street = str()
	r.Unit = str()
	r.City = str()
	r.State = str()
	r.ZIP = str()
	r.AddrKey = str()
	if n := count(); n > 0 {
		r.IDs = make([]mpi.Identifier, n)
		for k := range r.IDs {
			r.IDs[k] = mpi.Identifier{System: str(), Value: str()}
		}
	}
	r.Flags = mpi.Flags(uv())
	if bad || i != len(data) {
		return errFeatures
	}
	return nil
}

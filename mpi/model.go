package mpi

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"sort"

	"github.com/concord-hie/concord/internal/errs"
)

// Outcome is the decision for a pair or a record.
type Outcome uint8

const (
	NoLink Outcome = iota
	Review
	AutoLink
)

func (o Outcome) String() string {
	switch o {
	case AutoLink:
		return "auto-link"
	case Review:
		return "review"
	}
	return "no-link"
}

// Model is a trained Fellegi–Sunter model: per-field m and u probabilities per level,
// term-frequency tables and the decision thresholds. It serializes to JSON; call Init
// after decoding (LoadModel does). A Model is read-only after Init and safe to share.
type Model struct {
	Version string  `json:"version"`
	Lambda  float64 `json:"lambda"` // prior probability that two random records match
	// M and U hold, per field, the probability of each level (index 0, null, unused).
	M [NumFields][]float64 `json:"m"`
	U [NumFields][]float64 `json:"u"`
	// TF holds log2 relative frequencies of the most frequent values of the given name,
	// surname, ZIP and phone; TFUnseen is used for values not in the table.
	TF       [4]map[string]float32 `json:"tf"`
	TFUnseen [4]float32            `json:"tfUnseen"`
	// Link and Review are weight thresholds: ≥ Link auto-links (absent a guard), ≥ Review
	// goes to review. Margin is how far the best person must beat the runner-up.
	Link   float64 `json:"link"`
	Review float64 `json:"review"`
	Margin float64 `json:"margin"`
	// Precision is the target the thresholds were chosen for, and how.
	Precision float64 `json:"precision"`
	// Guards is the set of hard guards in force (AllGuards unless a population is known
	// to have no relatives, such as FEBRL).
	Guards     Guard  `json:"guards"`
	Calibrated string `json:"calibrated"`

	w    [NumFields][10]float32
	uLog [4]float32 // log2 u of the exact level of the TF fields
	// namesMax bounds what the given name, surname and city can add to a score (the
	// largest weight of each, TF adjustment included, or 0 when all are negative).
	namesMax float32
	// ssnDiffMax and addrNearMax bound the SSN weight of two different full SSNs and the
	// address weight of two addresses in one ZIP (see hotBound).
	ssnDiffMax, addrNearMax float32
	// diffMax[f] is the largest weight of given name, surname or city (f) over the
	// levels two different present values can get.
	diffMax [NumFields]float32
}

const (
	tfGiven = iota
	tfFamily
	tfZIP
	tfPhone
)

// Init derives the log-weight tables from M and U. It returns errs.Invalid when a table
// has the wrong shape.
func (m *Model) Init() error {
	for f := 0; f < NumFields; f++ {
		if len(m.M[f]) != Levels[f] || len(m.U[f]) != Levels[f] {
			return errs.E("mpi.Model.Init", errs.Invalid, "model tables have the wrong number of levels")
		}
		for l := 1; l < Levels[f]; l++ {
			mm, uu := math.Max(m.M[f][l], 1e-6), math.Max(m.U[f][l], 1e-7)
			m.w[f][l] = float32(math.Log2(mm / uu))
		}
	}
	m.uLog[tfGiven] = float32(math.Log2(math.Max(m.U[FieldGiven][NameExact], 1e-7)))
	m.uLog[tfFamily] = float32(math.Log2(math.Max(m.U[FieldFamily][NameExact], 1e-7)))
	m.uLog[tfZIP] = float32(math.Log2(math.Max(m.U[FieldAddress][AddrZIP]+m.U[FieldAddress][AddrNearZIP]+m.U[FieldAddress][AddrStreet], 1e-7)))
	m.uLog[tfPhone] = float32(math.Log2(math.Max(m.U[FieldPhone][1], 1e-7)))
	m.namesMax = 0
	for _, f := range [...]int{FieldGiven, FieldFamily, FieldCity} {
		hi := float32(0) // a null level weighs 0
		for l := 1; l < Levels[f]; l++ {
			w := m.w[f][l]
			if l == NameExact && f != FieldCity {
				w += tfClamp
			}
			hi = max(hi, w)
		}
		m.namesMax += hi
	}
	for _, f := range [...]int{FieldGiven, FieldFamily, FieldCity} {
		m.diffMax[f] = m.w[f][2]
		for l := 3; l < Levels[f]; l++ {
			m.diffMax[f] = max(m.diffMax[f], m.w[f][l])
		}
	}
	m.ssnDiffMax = max(m.w[FieldSSN][SSNOneEdit], m.w[FieldSSN][SSNElse])
	m.addrNearMax = max(m.w[FieldAddress][AddrStreet], m.w[FieldAddress][AddrNearZIP],
		m.w[FieldAddress][AddrZIP]+tfClamp, m.w[FieldAddress][AddrElse])
	return nil
}

// LoadModel decodes a JSON model and initializes it. It returns errs.Invalid for a
// malformed model.
func LoadModel(data []byte) (*Model, error) {
	var m Model
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, errs.E("mpi.LoadModel", errs.Invalid, "model is not valid JSON", err)
	}
	if err := m.Init(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Weight returns the log2(m/u) weight of a field level.
func (m *Model) Weight(field, level int) float64 { return float64(m.w[field][level]) }

// Prepare fills r's term-frequency features from the model's tables. Call it once per
// record before scoring; an unprepared record is scored without TF adjustment.
func (m *Model) Prepare(r *Record) {
	look := func(i int, v string) float32 {
		if v == "" {
			return 0
		}
		if f, ok := m.TF[i][v]; ok {
			return f
		}
		return m.TFUnseen[i]
	}
	r.tfGiven = look(tfGiven, r.Given)
	r.tfFamily = look(tfFamily, r.Family)
	r.tfZIP = look(tfZIP, r.ZIP)
	r.tfPhone = look(tfPhone, r.Phone)
}

// Evidence explains a score: the level and the weight (bits) of every field.
type Evidence struct {
	Levels  Vector
	Weights [NumFields]float32
}

const tfClamp = 4

func tfAdj(uLog, tf float32) float32 {
	if tf == 0 {
		return 0
	}
	d := uLog - tf
	if d > tfClamp {
		return tfClamp
	}
	if d < -tfClamp {
		return -tfClamp
	}
	return d
}

// Score returns the match weight of a pair (sum of log2(m/u) over fields, with TF
// adjustment of exact names, ZIP and phone) and its evidence. It allocates nothing.
func (m *Model) Score(a, b *Record) (float64, Evidence) {
	var ev Evidence
	ev.Levels = Compare(a, b)
	return m.weigh(a, b, &ev), ev
}

// scoreFrom returns the score of a pair when it can reach min, and ok false without
// comparing names when it cannot: the cheap fields are compared first, and the names and
// city are skipped when even their best weights could not lift the pair to min. The
// correlation corrections of weigh only lower a score, so the bound is safe.
func (m *Model) scoreFrom(a, b *Record, min float64) (float64, bool) {
	var ev Evidence
	compareCheap(a, b, &ev.Levels)
	var part float32
	for _, f := range [...]int{FieldDOB, FieldSSN, FieldPhone, FieldAddress, FieldSex} {
		l := ev.Levels[f]
		if l == 0 {
			continue
		}
		w := m.w[f][l]
		switch {
		case f == FieldPhone && l == 1:
			w += tfAdj(m.uLog[tfPhone], max(a.tfPhone, b.tfPhone))
		case f == FieldAddress && l == AddrZIP:
			w += tfAdj(m.uLog[tfZIP], max(a.tfZIP, b.tfZIP))
		}
		part += w
	}
	if float64(part+m.namesMax)+1e-3 < min {
		return 0, false
	}
	compareNames(a, b, &ev.Levels)
	w := m.weigh(a, b, &ev)
	return w, w >= min
}

// hotRec is what the batch prefilter reads of a record, 40 bytes kept side by side for
// all records so that most candidate pairs are rejected without touching the records.
// Strings are FNV-1a hashes, 0 when the value is missing.
type hotRec struct {
	ssn, ssnLast, phone, zip, house uint32
	given, family, city             uint32
	year                            int16
	month, day                      uint8
	sex                             Sex
	dob, street                     bool // DOB and street present
}

func hash32(s string) uint32 {
	if s == "" {
		return 0
	}
	h := uint64(newHasher(0).str(s))
	return max(uint32(h^h>>32), 1)
}

func newHotRec(r *Record) hotRec {
	return hotRec{ssn: hash32(r.SSN), ssnLast: hash32(r.SSNLast), phone: hash32(r.Phone), zip: hash32(r.ZIP),
		house: hash32(r.House), given: hash32(r.Given), family: hash32(r.Family), city: hash32(r.City), year: r.Year, month: r.Month, day: r.Day, sex: r.Sex, dob: r.DOB != "", street: r.Street != ""}
}

// hotBound is an upper bound on the score of a pair from their hotRecs: the birth date
// and sex levels exactly, the others as far as equal hashes tell (equal values at the
// exact level's weight, TF adjustment at its clamp; different ones at the best other
// level; a hash collision can only raise the bound).
func (m *Model) hotBound(a, b *hotRec) float32 {
	var s float32
	for _, f := range [...]struct {
		x, y  uint32
		field int
		tf    float32
	}{{a.given, b.given, FieldGiven, tfClamp}, {a.family, b.family, FieldFamily, tfClamp}, {a.city, b.city, FieldCity, 0}} {
		switch {
		case f.x == 0 || f.y == 0:
		case f.x == f.y:
			s += m.w[f.field][NameExact] + f.tf
		default:
			s += m.diffMax[f.field]
		}
	}
	if a.dob && b.dob {
		s += m.w[FieldDOB][dobLevelYMD(a.year, a.month, a.day, b.year, b.month, b.day)]
	}
	switch {
	case a.ssn != 0 && b.ssn != 0:
		if a.ssn == b.ssn {
			s += m.w[FieldSSN][SSNExact]
		} else {
			s += m.ssnDiffMax
		}
	case a.ssnLast == 0 || b.ssnLast == 0:
	case a.ssnLast == b.ssnLast:
		s += m.w[FieldSSN][SSNLast4]
	default:
		s += m.w[FieldSSN][SSNElse]
	}
	switch {
	case a.phone == 0 || b.phone == 0:
	case a.phone == b.phone:
		s += m.w[FieldPhone][1] + tfClamp
	default:
		s += m.w[FieldPhone][2]
	}
	if (a.street || a.zip != 0) && (b.street || b.zip != 0) {
		zipOK := a.zip != 0 && a.zip == b.zip
		zipMissing := a.zip == 0 || b.zip == 0
		house := a.house != 0 && a.house == b.house
		if !zipOK && !(house && zipMissing) {
			s += m.w[FieldAddress][AddrElse]
		} else {
			s += m.addrNearMax
		}
	}
	switch {
	case a.sex == 0 || b.sex == 0:
	case a.sex == b.sex:
		s += m.w[FieldSex][1]
	default:
		s += m.w[FieldSex][2]
	}
	return s
}

func (m *Model) weigh(a, b *Record, ev *Evidence) float64 {
	var sum float32
	for f := 0; f < NumFields; f++ {
		l := ev.Levels[f]
		if l == 0 {
			continue
		}
		w := m.w[f][l]
		switch {
		case f == FieldGiven && l == NameExact:
			w += tfAdj(m.uLog[tfGiven], max(a.tfGiven, b.tfGiven))
		case f == FieldFamily && l == NameExact:
			w += tfAdj(m.uLog[tfFamily], max(a.tfFamily, b.tfFamily))
		case f == FieldPhone && l == 1:
			w += tfAdj(m.uLog[tfPhone], max(a.tfPhone, b.tfPhone))
		case f == FieldAddress && l == AddrZIP:
			w += tfAdj(m.uLog[tfZIP], max(a.tfZIP, b.tfZIP))
		}
		ev.Weights[f] = w
		sum += w
	}
	// Correlated fields are scored together, not twice: a city adds nothing beyond a
	// matching street address or ZIP, and a shared phone at the same street address is
	// one household fact (the larger weight plus one bit), not two.
	if ev.Levels[FieldCity] != 0 && (ev.Levels[FieldAddress] == AddrStreet || ev.Levels[FieldAddress] == AddrNearZIP || ev.Levels[FieldAddress] == AddrZIP) && ev.Weights[FieldCity] > 0 {
		sum -= ev.Weights[FieldCity]
		ev.Weights[FieldCity] = 0
	}
	if ev.Levels[FieldAddress] == AddrStreet && ev.Levels[FieldPhone] == 1 {
		wa, wp := ev.Weights[FieldAddress], ev.Weights[FieldPhone]
		lo := min(wa, wp)
		if lo > 1 {
			sum -= lo - 1
			if wa < wp {
				ev.Weights[FieldAddress] = 1
			} else {
				ev.Weights[FieldPhone] = 1
			}
		}
	}
	return float64(sum)
}

// Guard returns the guards in force that fire for a pair (see Guards).
func (m *Model) Guard(a, b *Record, v Vector) Guard { return Guards(a, b, v) & m.Guards }

// Decide turns a score and the guards that fired into an outcome: a guard turns an
// auto-link into a review; below Review it is no link.
func (m *Model) Decide(score float64, g Guard) Outcome {
	switch {
	case score >= m.Link && g == 0:
		return AutoLink
	case score >= m.Link, score >= m.Review:
		return Review
	}
	return NoLink
}

// Probability converts a weight to the posterior match probability under the model's prior.
func (m *Model) Probability(w float64) float64 {
	odds := m.Lambda / (1 - m.Lambda) * math.Exp2(w)
	return odds / (1 + odds)
}

// FitTF sets the term-frequency tables from a population of records, keeping the top
// values of each field, and prepares every record.
func (m *Model) FitTF(recs []Record) {
	m.fitTF(len(recs), func(j int) *Record { return &recs[j] })
}

// fitTF is FitTF over n records reached through at.
func (m *Model) fitTF(n int, at func(int) *Record) {
	nrec := n
	const keep = 5000
	fields := [4]func(*Record) string{
		func(r *Record) string { return r.Given },
		func(r *Record) string { return r.Family },
		func(r *Record) string { return r.ZIP },
		func(r *Record) string { return r.Phone },
	}
	for i, get := range fields {
		counts := map[string]int{}
		n := 0
		for j := range nrec {
			if v := get(at(j)); v != "" {
				counts[v]++
				n++
			}
		}
		m.TF[i] = map[string]float32{}
		if n == 0 {
			m.TFUnseen[i] = 0
			continue
		}
		type kv struct {
			k string
			c int
		}
		all := make([]kv, 0, len(counts))
		for k, c := range counts {
			all = append(all, kv{k, c})
		}
		sort.Slice(all, func(a, b int) bool { return all[a].c > all[b].c || (all[a].c == all[b].c && all[a].k < all[b].k) })
		for j, e := range all {
			if j >= keep || e.c < 2 {
				break
			}
			m.TF[i][e.k] = float32(math.Log2(float64(e.c) / float64(n)))
		}
		m.TFUnseen[i] = float32(math.Log2(1 / float64(n)))
	}
	for j := range nrec {
		m.Prepare(at(j))
	}
}

// TrainOptions control Train.
type TrainOptions struct {
	Version     string
	Seed        uint64
	RandomPairs int     // pairs sampled for u (default 200,000)
	MaxPairs    int     // blocked pairs used for EM (default 400,000)
	Iterations  int     // EM iterations (default 40)
	Precision   float64 // auto-link precision target (default 0.999)
	// Same, when set, labels pairs (true = same person) and is used only to calibrate
	// the thresholds for Precision; m and u never see it.
	Same func(i, j int) bool
	// Guards overrides the guards in force (0: AllGuards).
	Guards Guard
	// ReviewPrecision is the precision floor of the review band when Same is set
	// (default 0.5): pairs less likely than this are not worth a reviewer's time.
	ReviewPrecision float64
}

// Train estimates a model from records: term frequencies, u from random pairs, λ and m by
// EM over blocked candidate pairs (u held fixed, as Splink does). Thresholds are placed
// by the posterior probability, or calibrated on labelled pairs when opts.Same is set.
// recs are prepared (TF) in place. It returns errs.Invalid with fewer than 2 records.
func Train(recs []Record, opts TrainOptions) (*Model, error) {
	if len(recs) < 2 {
		return nil, errs.E("mpi.Train", errs.Invalid, "need at least two records")
	}
	if opts.RandomPairs == 0 {
		opts.RandomPairs = 200_000
	}
	if opts.MaxPairs == 0 {
		opts.MaxPairs = 400_000
	}
	if opts.Iterations == 0 {
		opts.Iterations = 40
	}
	if opts.Precision == 0 {
		opts.Precision = 0.999
	}
	if opts.ReviewPrecision == 0 {
		opts.ReviewPrecision = 0.5
	}
	rng := rand.New(rand.NewPCG(opts.Seed, 0x6d7069))
	m := &Model{Version: opts.Version, Precision: opts.Precision, Margin: 2, Guards: AllGuards}
	if opts.Guards != 0 {
		m.Guards = opts.Guards
	}
	m.FitTF(recs)

	// u from random pairs, with add-one smoothing.
	var uc [NumFields][]float64
	for f := range uc {
		uc[f] = make([]float64, Levels[f])
		for l := 1; l < Levels[f]; l++ {
			uc[f][l] = 1
		}
	}
	for range opts.RandomPairs {
		i, j := rng.IntN(len(recs)), rng.IntN(len(recs))
		if i == j {
			continue
		}
		v := Compare(&recs[i], &recs[j])
		for f, l := range v {
			if l != 0 {
				uc[f][l]++
			}
		}
	}
	for f := range uc {
		m.U[f] = normalizeLevels(uc[f])
	}

	// m by EM in several blocking passes, as Splink does: each pass takes the pairs that
	// agree on one key and leaves that key's fields out, since they agree by construction.
	// u stays fixed; a field's m is the mean over the passes that estimated it. The passes
	// block on person-level keys (full SSN; phonetic given + surname), not on household
	// keys (address, DOB), whose non-matches (spouses, twins) would pass for matches.
	pairs := CandidatePairs(recs, DefaultBlockCap)
	if len(pairs) > opts.MaxPairs {
		rng.Shuffle(len(pairs), func(a, b int) { pairs[a], pairs[b] = pairs[b], pairs[a] })
		pairs = pairs[:opts.MaxPairs]
	}
	passes := []struct {
		key     func(*Record) string
		exclude []int
	}{
		{func(r *Record) string {
			if r.GivenDM[0] == "" || r.FamilyDM[0] == "" {
				return ""
			}
			return r.GivenDM[0] + "|" + r.FamilyDM[0]
		}, []int{FieldGiven, FieldFamily}},
		{func(r *Record) string { return r.SSN }, []int{FieldSSN}},
	}
	var msum [NumFields][]float64
	var mn [NumFields]float64
	for f := range msum {
		msum[f] = make([]float64, Levels[f])
	}
	for _, p := range passes {
		counts := passVectors(recs, p.key, opts.MaxPairs/len(passes), rng)
		if len(counts) == 0 {
			continue
		}
		var ex [NumFields]bool
		for _, f := range p.exclude {
			ex[f] = true
		}
		est, _ := emPass(counts, m.U, ex, opts.Iterations)
		for f := range est {
			if ex[f] {
				continue
			}
			for l := range est[f] {
				msum[f][l] += est[f][l]
			}
			mn[f]++
		}
	}
	for f := range msum {
		if mn[f] == 0 {
			m.M[f] = slices.Clone(m.U[f]) // never estimated: weight 0
			continue
		}
		for l := range msum[f] {
			msum[f][l] /= mn[f]
		}
		m.M[f] = msum[f]
	}
	// λ among all candidate pairs, with m and u fixed.
	all := map[Vector]float64{}
	for _, p := range pairs {
		all[Compare(&recs[p[0]], &recs[p[1]])]++
	}
	// λ is the probability that two random records match (as in Splink): the share of
	// matches among candidates times candidates over all pairs. Weights use u from random
	// pairs, so the prior must be the random-pair prior too.
	lc := emLambda(all, m.M, m.U, opts.Iterations)
	total := float64(len(recs)) * float64(len(recs)-1) / 2
	m.Lambda = math.Min(math.Max(lc*float64(len(pairs))/total, 1e-12), 0.5)
	if err := m.Init(); err != nil {
		return nil, err
	}

	// Thresholds.
	if opts.Same != nil {
		m.calibrate(recs, pairs, opts)
	} else {
		// posterior odds: P ≥ Precision to link, ≥ 0.1 to review
		prior := math.Log2(m.Lambda / (1 - m.Lambda))
		m.Link = math.Log2(opts.Precision/(1-opts.Precision)) - prior
		m.Review = math.Log2(0.1/0.9) - prior
		if m.Review > m.Link {
			m.Review = m.Link
		}
		m.Calibrated = "posterior"
	}
	return m, nil
}

// calibrate places Link at the lowest weight above which labelled candidate pairs reach
// the precision target, and Review where the precision of the band falls below
// opts.ReviewPrecision.
func (m *Model) calibrate(recs []Record, pairs [][2]uint32, opts TrainOptions) {
	type sp struct {
		w    float64
		same bool
	}
	s := make([]sp, 0, len(pairs))
	for _, p := range pairs {
		// Guarded pairs stay in: the threshold alone must meet the target, so the guards
		// are a second line of defence rather than part of the calibration.
		w, _ := m.Score(&recs[p[0]], &recs[p[1]])
		s = append(s, sp{w, opts.Same(int(p[0]), int(p[1]))})
	}
	sort.Slice(s, func(a, b int) bool { return s[a].w > s[b].w })
	// Walk down by weight; Link = the last weight at which cumulative precision holds.
	tp, fp := 0.0, 0.0
	link := math.Inf(1)
	for i := 0; i < len(s); i++ {
		if s[i].same {
			tp++
		} else {
			fp++
		}
		if i+1 < len(s) && s[i+1].w == s[i].w {
			continue
		}
		if tp/(tp+fp) >= opts.Precision {
			link = s[i].w
		}
	}
	// Review: lowest weight where a sliding window of 200 pairs stays above the floor.
	review := link
	const win = 200
	for i := 0; i < len(s); i++ {
		if s[i].w >= link {
			continue
		}
		lo, hi := max(0, i-win/2), min(len(s), i+win/2)
		same := 0
		for _, x := range s[lo:hi] {
			if x.same {
				same++
			}
		}
		if float64(same)/float64(hi-lo) < opts.ReviewPrecision {
			break
		}
		review = s[i].w
	}
	m.Link, m.Review = link, review
	m.Calibrated = "labelled"
}

func normalizeLevels(c []float64) []float64 {
	out := make([]float64, len(c))
	var s float64
	for l := 1; l < len(c); l++ {
		s += c[l]
	}
	for l := 1; l < len(c); l++ {
		out[l] = c[l] / s
	}
	return out
}

// CandidatePairs returns every distinct blocked pair (i < j) of recs.
func CandidatePairs(recs []Record, blockCap int) [][2]uint32 {
	ix := NewIndex(blockCap)
	keys := make([][]BlockKey, len(recs))
	for i := range recs {
		keys[i] = BlockKeys(&recs[i])
		ix.Add(uint32(i), keys[i])
	}
	seen := make([]uint32, len(recs))
	var out [][2]uint32
	var buf []uint32
	for i := range recs {
		ii := uint32(i)
		buf = ix.Candidates(buf[:0], keys[i], seen, ii+1, func(j uint32) bool { return j < ii })
		for _, j := range buf {
			out = append(out, [2]uint32{j, ii})
		}
	}
	return out
}

// passVectors returns the comparison vectors (with counts) of up to limit pairs that
// share a non-empty key value, taking at most 50 records from any one value.
func passVectors(recs []Record, key func(*Record) string, limit int, rng *rand.Rand) map[Vector]float64 {
	groups := map[string][]int{}
	for i := range recs {
		if k := key(&recs[i]); k != "" {
			groups[k] = append(groups[k], i)
		}
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	rng.Shuffle(len(keys), func(a, b int) { keys[a], keys[b] = keys[b], keys[a] })
	out := map[Vector]float64{}
	n := 0
	for _, k := range keys {
		g := groups[k]
		if len(g) > 50 {
			g = g[:50]
		}
		for x := 0; x < len(g) && n < limit; x++ {
			for y := x + 1; y < len(g) && n < limit; y++ {
				out[Compare(&recs[g[x]], &recs[g[y]])]++
				n++
			}
		}
		if n >= limit {
			break
		}
	}
	return out
}

// emPass estimates m (per field and level) and λ by EM over aggregated vectors, with u
// fixed and the excluded fields left out of the likelihood.
func emPass(counts map[Vector]float64, u [NumFields][]float64, ex [NumFields]bool, iters int) ([NumFields][]float64, float64) {
	var m [NumFields][]float64
	for f := 0; f < NumFields; f++ {
		init := make([]float64, Levels[f])
		for l := 1; l < Levels[f]; l++ {
			init[l] = 1
		}
		init[1] = float64(Levels[f]) * 4
		m[f] = normalizeLevels(init)
	}
	lambda := 0.3
	for range iters {
		var mc [NumFields][]float64
		for f := range mc {
			mc[f] = make([]float64, Levels[f])
			for l := 1; l < Levels[f]; l++ {
				mc[f][l] = 0.01
			}
		}
		var sumP, total float64
		for v, n := range counts {
			lm, lu := math.Log(lambda), math.Log(1-lambda)
			for f, l := range v {
				if l != 0 && !ex[f] {
					lm += math.Log(math.Max(m[f][l], 1e-9))
					lu += math.Log(math.Max(u[f][l], 1e-9))
				}
			}
			p := 1 / (1 + math.Exp(lu-lm))
			sumP += p * n
			total += n
			for f, l := range v {
				if l != 0 {
					mc[f][l] += p * n
				}
			}
		}
		lambda = math.Min(math.Max(sumP/total, 1e-6), 1-1e-6)
		for f := range mc {
			m[f] = normalizeLevels(mc[f])
		}
	}
	return m, lambda
}

// emLambda estimates the share of matches among counts with m and u fixed.
func emLambda(counts map[Vector]float64, m, u [NumFields][]float64, iters int) float64 {
	lambda := 0.1
	for range iters {
		var sumP, total float64
		for v, n := range counts {
			lm, lu := math.Log(lambda), math.Log(1-lambda)
			for f, l := range v {
				if l != 0 {
					lm += math.Log(math.Max(m[f][l], 1e-9))
					lu += math.Log(math.Max(u[f][l], 1e-9))
				}
			}
			sumP += n / (1 + math.Exp(lu-lm))
			total += n
		}
		lambda = math.Min(math.Max(sumP/total, 1e-6), 1-1e-6)
	}
	return lambda
}

package store

// SingleAttempt makes every operation of o run once, without db.InTx's retry on deadlock,
// so a test sees a deadlock instead of a silent retry.
func SingleAttempt(o *Ops) { o.once = true }

// Legacy makes m fetch candidates the way it did before the features column (full block
// counts, every candidate re-normalized from its demographics), for before/after benchmarks.
func Legacy(m *Matcher, on bool) { m.legacy = on }

// EncodeFeatures and DecodeFeatures expose the features codec to its tests.
var (
	EncodeFeatures = encodeFeatures
	DecodeFeatures = decodeFeatures
	FeatureFields  = featureFields
)

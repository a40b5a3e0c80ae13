package store

// WithLockedHook returns o with f run inside each Reindex batch's transaction once its
// rows are locked, before their index rows are read.
func WithLockedHook(o ReindexOptions, f func()) ReindexOptions {
	o.locked = f
	return o
}

package store

// SingleAttempt makes every operation of o run once, without db.InTx's retry on deadlock,
// so a test sees a deadlock instead of a silent retry.
func SingleAttempt(o *Ops) { o.once = true }

package records

import "time"

// SetScanClock makes x read the time for its ScanTime deadlines from now, so that a test
// can make a search run out of ScanTime at a point it chooses.
func SetScanClock(x *Searcher, now func() time.Time) { x.clock = now }

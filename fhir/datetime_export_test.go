package fhir

import (
	"testing"
	"time"
)

func TestParseDateTimeAndSearchDate(t *testing.T) {
	d, err := ParseDateTime("2026-03-01T10:00:00+02:00")
	if err != nil || !d.Low.Equal(time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)) {
		t.Fatalf("ParseDateTime = %v, %v", d, err)
	}
	if d, err := ParseDateTime("2026-03"); err != nil || d.Precision != PrecisionMonth || !d.High.Equal(time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("month = %v, %v", d, err)
	}
	for _, bad := range []string{"2026-02-30", "2026-03-01T10:00:00", "yesterday", ""} {
		if _, err := ParseDateTime(bad); err == nil {
			t.Errorf("ParseDateTime(%q) accepted", bad)
		}
	}
	if d, err := ParseSearchDate("2026-03-01T10:00"); err != nil || d.Zoned || d.Precision != PrecisionMinute {
		t.Fatalf("ParseSearchDate = %v, %v", d, err)
	}
}

package documents_test

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/concord-hie/concord/documents"
)

func TestVerifyingReader(t *testing.T) {
	data := []byte("visit summary, 2026-11-27")
	key := documents.KeyOf(data)
	flipped := bytes.Clone(data)
	flipped[len(flipped)-1] ^= 1
	tests := []struct {
		name    string
		r       io.Reader
		size    int64
		wantErr error // nil: the whole body comes through
	}{
		{"exact", bytes.NewReader(data), int64(len(data)), nil},
		{"one byte at a time", iotest.OneByteReader(bytes.NewReader(data)), int64(len(data)), nil},
		{"data with EOF", iotest.DataErrReader(bytes.NewReader(data)), int64(len(data)), nil},
		{"last byte flipped", bytes.NewReader(flipped), int64(len(data)), documents.ErrDigestMismatch},
		{"short", bytes.NewReader(data[:10]), int64(len(data)), documents.ErrSizeMismatch},
		{"long", io.MultiReader(bytes.NewReader(data), bytes.NewReader([]byte{0})), int64(len(data)), documents.ErrSizeMismatch},
		{"declared too small", bytes.NewReader(data), int64(len(data)) - 1, documents.ErrSizeMismatch},
		{"reader fails", io.MultiReader(bytes.NewReader(data[:5]), iotest.ErrReader(iotest.ErrTimeout)), int64(len(data)), iotest.ErrTimeout},
		{"reader fails at the end", io.MultiReader(bytes.NewReader(data), iotest.ErrReader(iotest.ErrTimeout)), int64(len(data)), iotest.ErrTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := io.ReadAll(documents.VerifyingReader(tt.r, key, tt.size))
			if tt.wantErr == nil {
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("got %q, %v; want the body and no error", got, err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if len(got) >= len(data) {
				t.Errorf("released %d bytes of a bad %d-byte body; the end must be withheld", len(got), len(data))
			}
		})
	}
	t.Run("empty", func(t *testing.T) {
		got, err := io.ReadAll(documents.VerifyingReader(bytes.NewReader(nil), documents.KeyOf(nil), 0))
		if err != nil || len(got) != 0 {
			t.Fatalf("got %q, %v", got, err)
		}
	})
}

func TestByteRangeLen(t *testing.T) {
	tests := []struct {
		r    documents.ByteRange
		size int64
		want int64
	}{
		{documents.ByteRange{Start: 0, End: 0}, 10, 1},
		{documents.ByteRange{Start: 0, End: -1}, 10, 10},
		{documents.ByteRange{Start: 5, End: 100}, 10, 5},
		{documents.ByteRange{Start: 9, End: -1}, 10, 1},
		{documents.ByteRange{Start: 10, End: -1}, 10, 0},
	}
	for _, tt := range tests {
		if got := tt.r.Len(tt.size); got != tt.want {
			t.Errorf("%+v.Len(%d) = %d, want %d", tt.r, tt.size, got, tt.want)
		}
	}
}

func TestValidKey(t *testing.T) {
	k := documents.KeyOf([]byte("x"))
	for key, want := range map[string]bool{
		k: true, "": false, k[:63]: false, k + "a": false, "G" + k[1:]: false, "A" + k[1:]: false, "../" + k[3:]: false,
	} {
		if got := documents.ValidKey(key); got != want {
			t.Errorf("ValidKey(%q) = %v, want %v", key, got, want)
		}
	}
}

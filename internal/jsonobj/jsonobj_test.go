package jsonobj

import "testing"

func TestEditKeepsOrderAndBytes(t *testing.T) {
	o, err := Parse([]byte(`{"b": [1, 2],"a":{"x":1},"c":"z"}`))
	if err != nil {
		t.Fatal(err)
	}
	if string(o.Get("a")) != `{"x":1}` || o.Get("nope") != nil {
		t.Fatalf("Get: %s", o.Get("a"))
	}
	got := string(o.Set("a", []byte(`2`)).Del("c").Set("d", []byte(`"n"`)).Encode())
	if want := `{"b":[1, 2],"a":2,"d":"n"}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if _, err := Parse([]byte(`[1]`)); err != ErrNotObject {
		t.Errorf("array: %v", err)
	}
}

package units

import "testing"

func TestThousands(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 2412820480: "2,412,820,480", -1234: "-1,234"} {
		if got := Thousands(n); got != want {
			t.Errorf("Thousands(%d) = %q, expected %q", n, got, want)
		}
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{512: "0.5 KiB", 3 << 20: "3.00 MiB", 9245793075: "8.61 GiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, expected %q", n, got, want)
		}
	}
}

func TestPlural(t *testing.T) {
	if got := Plural(1, "case") + ", " + Plural(0, "case") + ", " + Plural(3, "case"); got != "1 case, 0 cases, 3 cases" {
		t.Errorf("Plural: %q", got)
	}
}

package mesh

import (
	"reflect"
	"testing"
)

func TestRankCoordTable(t *testing.T) {
	m := Mesh{DP: 2, TP: 2, PP: 2}
	// rank = (pp*DP + dp)*TP + tp
	table := []struct {
		rank int
		c    Coord
	}{
		{0, Coord{0, 0, 0}}, {1, Coord{DP: 0, TP: 1, PP: 0}},
		{2, Coord{DP: 1, TP: 0, PP: 0}}, {3, Coord{DP: 1, TP: 1, PP: 0}},
		{4, Coord{DP: 0, TP: 0, PP: 1}}, {5, Coord{DP: 0, TP: 1, PP: 1}},
		{6, Coord{DP: 1, TP: 0, PP: 1}}, {7, Coord{DP: 1, TP: 1, PP: 1}},
	}
	for _, tc := range table {
		if got := m.Coord(tc.rank); got != tc.c {
			t.Errorf("Coord(%d) = %v, want %v", tc.rank, got, tc.c)
		}
		if got := m.Rank(tc.c); got != tc.rank {
			t.Errorf("Rank(%v) = %d, want %d", tc.c, got, tc.rank)
		}
	}
}

func TestGroups(t *testing.T) {
	m := Mesh{DP: 2, TP: 2, PP: 2}
	cases := []struct {
		axis Axis
		want [][]int
	}{
		{TensorAxis, [][]int{{0, 1}, {2, 3}, {4, 5}, {6, 7}}},
		{DataAxis, [][]int{{0, 2}, {1, 3}, {4, 6}, {5, 7}}},
		{PipelineAxis, [][]int{{0, 4}, {1, 5}, {2, 6}, {3, 7}}},
	}
	for _, tc := range cases {
		if got := m.Groups(tc.axis); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Groups(%v) = %v, want %v", tc.axis, got, tc.want)
		}
	}
}

func TestGroupsPartitionEveryLayout(t *testing.T) {
	for dp := 1; dp <= 3; dp++ {
		for tp := 1; tp <= 3; tp++ {
			for pp := 1; pp <= 3; pp++ {
				m := Mesh{DP: dp, TP: tp, PP: pp}
				for _, a := range []Axis{DataAxis, TensorAxis, PipelineAxis} {
					count := make([]int, m.World())
					for _, g := range m.Groups(a) {
						if len(g) != m.Degree(a) {
							t.Fatalf("%v %v: group %v has size %d", m, a, g, len(g))
						}
						for i, r := range g {
							count[r]++
							if m.Index(a, r) != i {
								t.Fatalf("%v %v: rank %d at position %d has index %d", m, a, r, i, m.Index(a, r))
							}
						}
					}
					for r, c := range count {
						if c != 1 {
							t.Fatalf("%v %v: rank %d in %d groups", m, a, r, c)
						}
					}
				}
				for r := 0; r < m.World(); r++ {
					if m.Rank(m.Coord(r)) != r {
						t.Fatalf("%v: round trip of rank %d", m, r)
					}
				}
			}
		}
	}
}

func TestForWorld(t *testing.T) {
	if m, err := ForWorld(8, 0, 2, 2); err != nil || m != (Mesh{2, 2, 2}) {
		t.Fatalf("ForWorld(8,0,2,2) = %v, %v", m, err)
	}
	if _, err := ForWorld(6, 0, 4, 1); err == nil {
		t.Fatal("tp=4 on world 6 accepted")
	}
	if _, err := ForWorld(8, 4, 2, 2); err == nil {
		t.Fatal("dp*tp*pp=16 on world 8 accepted")
	}
	if _, err := ForWorld(0, 0, 1, 1); err == nil {
		t.Fatal("world 0 accepted")
	}
}

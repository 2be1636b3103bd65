module bgpd/typha-standin

go 1.19

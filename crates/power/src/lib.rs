//! Power meters: RAPL/hwmon energy counters, NVML, an external meter command, a declared wattage

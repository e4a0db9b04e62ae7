//! The two CRCs of the BM13xx serial protocol (reference notes 1.5, 1.6).

/// CRC5 over whole bytes: poly x^5 + x^2 + 1, init 0x1F, MSB first, no reflection, no xorout.
///
/// Commands end in `crc5(bytes after the preamble)`; a response is valid when the CRC5 over
/// every byte after its preamble, last byte included, is 0.
pub const fn crc5(data: &[u8]) -> u8 {
    crc5_bits(data, data.len() * 8)
}

/// CRC5 over the first `nbits` bits of `data` (MSB first). Responses carry their CRC in the low
/// 5 bits of the last byte, so the sender runs the CRC over all bits but those 5.
pub const fn crc5_bits(data: &[u8], nbits: usize) -> u8 {
    let mut crc: u8 = 0x1f;
    let mut i = 0;
    while i < nbits {
        let bit = (data[i / 8] >> (7 - (i % 8))) & 1;
        let top = (crc >> 4) & 1;
        crc = (crc << 1) & 0x1f;
        if top ^ bit != 0 {
            crc ^= 0x05;
        }
        i += 1;
    }
    crc
}

/// CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no xorout), used by jobs and
/// appended most-significant byte first.
pub const fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xffff;
    let mut i = 0;
    while i < data.len() {
        crc ^= (data[i] as u16) << 8;
        let mut b = 0;
        while b < 8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
            b += 1;
        }
        i += 1;
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc5_check_values_from_the_notes() {
        assert_eq!(crc5(b"123456789"), 0x0f);
        assert_eq!(crc5(&[0x52, 0x05, 0x00, 0x00]), 0x0a);
    }

    #[test]
    fn crc16_check_value_is_ccitt_false() {
        assert_eq!(crc16(b"123456789"), 0x29b1);
    }

    #[test]
    fn response_crc_over_all_bytes_is_zero() {
        let frame = [0xaa, 0x55, 0x13, 0x97, 0x18, 0x00, 0x00, 0x00, 0x06];
        assert_eq!(crc5(&frame[2..]), 0);
        assert_eq!(crc5_bits(&frame[2..], 7 * 8 - 5), 0x06);
    }
}

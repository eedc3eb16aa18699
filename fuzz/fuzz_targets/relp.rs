//! RELP frames from a hostile or broken server (the SIEM side of a RELP sink): the frame parser
//! over a stream of answers, the `rsp` status reader and the `open` offer reader.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shadowgate::record::relp;

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    while let Ok(Some((f, used))) = relp::parse(buf, relp::MAX_SERVER_DATA) {
        let _ = relp::rsp_status(&f.data);
        let _ = relp::offers(&f.data);
        if used == 0 || used > buf.len() {
            panic!("parser consumed {used} of {}", buf.len());
        }
        buf = &buf[used..];
    }
    let _ = relp::rsp_status(data);
    let _ = relp::offers(data);
});

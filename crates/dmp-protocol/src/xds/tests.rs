use super::*;

#[test]
fn ins_rules() {
    let ok =
        Ins::new("patient", "207058575627097", InsAuthority::TEST_NIR_OID).expect("official example INS");
    assert_eq!(ok.to_cx(), "207058575627097^^^&1.2.250.1.213.1.4.10&ISO^NH");
    assert_eq!(
        Ins::parse_cx("pid", "207058575627097^^^&1.2.250.1.213.1.4.10&ISO^NH^^20100907").expect("cx"),
        ok
    );
    // Corsica: 2A counts as 19 in the key.
    let n: u128 = "1850119001001".parse().expect("n");
    let key = 97 - n % 97;
    Ins::new("p", &format!("185012A001001{key:02}"), "").expect("corsican INS");
    for (v, oid, want) in [
        ("", "", "required"),
        ("20705857562709", "", "15 characters"),
        ("207058575627098", "", "does not match"),
        ("207058575627097", "1.2.250.1.213.1.4.9", "not an INS authority"),
        ("20705857562709X", "", "digits"),
        ("507058575627097", "", "starts with"),
    ] {
        let e = Ins::new("patient", v, oid).expect_err(v);
        assert!(e.to_string().contains(want), "{e}");
    }
    assert!(Ins::parse_cx("pid", "207058575627097^^^&1.2.250.1.213.1.4.10&ISO^PI").is_err());
}

#[test]
fn oid_and_dates() {
    assert!(is_oid("1.2.250.1.213.1.4.8"));
    for bad in ["", "1", "3.1", "1..2", "1.02", "1.2.a"] {
        assert!(!is_oid(bad), "{bad}");
    }
    Dtm::parse("d", "20100319194535").expect("dtm");
    Dtm::parse("d", "2010").expect("year");
    for bad in [
        "2010-03-19",
        "201013",
        "20100230",
        "20100319250000",
        "2010031919453",
    ] {
        assert!(Dtm::parse("d", bad).is_err(), "{bad}");
    }
    let d = Dtm::from_unix("t", 1_268_937_935, 0).expect("ts");
    assert_eq!(d.as_str(), "20100318184535");
    assert_eq!(d.to_unix(), Some(1_268_937_935));
    UniqueId::parse("u", "1.2.250.1.999^abc").expect("uid with extension");
    assert!(UniqueId::parse("u", "abc").is_err());
}

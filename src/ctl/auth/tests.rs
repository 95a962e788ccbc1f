use std::cell::RefCell;

use super::*;

/// A terminal (or none) that answers with scripted lines and records the
/// prompts it showed.
struct Scripted {
    interactive: bool,
    answers: RefCell<Vec<std::io::Result<String>>>,
    asked: RefCell<Vec<String>>,
}

impl Scripted {
    fn terminal(answers: &[&str]) -> Scripted {
        Scripted {
            interactive: true,
            answers: RefCell::new(answers.iter().rev().map(|a| Ok(a.to_string())).collect()),
            asked: RefCell::new(Vec::new()),
        }
    }

    fn none() -> Scripted {
        Scripted {
            interactive: false,
            ..Scripted::terminal(&[])
        }
    }
}

impl Prompt for Scripted {
    fn interactive(&self) -> bool {
        self.interactive
    }

    fn read_hidden(&self, prompt: &str) -> std::io::Result<String> {
        self.asked.borrow_mut().push(prompt.to_string());
        self.answers
            .borrow_mut()
            .pop()
            .expect("asked more often than scripted")
    }
}

fn creds(c: Option<Credentials>) -> (String, String) {
    let c = c.unwrap();
    (c.user, c.password)
}

#[test]
fn a_given_password_is_never_asked_for() {
    let tty = Scripted::terminal(&[]);
    let inline = credentials(Some("alice:s3cret"), Some("env".into()), &tty).unwrap();
    assert_eq!(creds(inline), ("alice".into(), "s3cret".into()));
    let env = credentials(Some("alice"), Some("from-env".into()), &tty).unwrap();
    assert_eq!(creds(env), ("alice".into(), "from-env".into()));
    assert!(credentials(None, None, &tty).unwrap().is_none());
    assert!(tty.asked.borrow().is_empty());
}

#[test]
fn a_missing_password_is_asked_on_a_terminal_once() {
    let tty = Scripted::terminal(&["typed"]);
    let c = credentials(Some("alice"), None, &tty).unwrap();
    assert_eq!(creds(c), ("alice".into(), "typed".into()));
    assert_eq!(*tty.asked.borrow(), ["Password for alice: "]);
}

#[test]
fn without_a_terminal_a_missing_password_is_a_clear_error() {
    let none = Scripted::none();
    let e = credentials(Some("alice"), None, &none).unwrap_err();
    assert_eq!(e.exit, Exit::BadInput);
    assert!(e.message.contains("no terminal to ask on"), "{e}");
    assert!(e.message.contains("RAFTKV_PASSWORD"), "{e}");
    assert!(none.asked.borrow().is_empty());
    // An empty name is refused before anyone is asked.
    let tty = Scripted::terminal(&[]);
    let e = credentials(Some(":pw"), None, &tty).unwrap_err();
    assert!(e.message.contains("empty user name"), "{e}");
    let e = credentials(Some(""), None, &tty).unwrap_err();
    assert!(e.message.contains("empty user name"), "{e}");
}

#[test]
fn a_terminal_that_fails_is_reported() {
    let tty = Scripted {
        answers: RefCell::new(vec![Err(std::io::Error::other("no tty"))]),
        ..Scripted::terminal(&[])
    };
    let e = credentials(Some("alice"), None, &tty).unwrap_err();
    assert!(e.message.contains("cannot read the password"), "{e}");
}

fn new_for(password: Option<&str>, prompt: &dyn Prompt) -> Result<String, CtlError> {
    new_password(
        &UserPassword {
            name: "bob".into(),
            password: password.map(str::to_string),
        },
        prompt,
    )
}

#[test]
fn a_new_password_is_asked_twice_and_must_match() {
    let tty = Scripted::terminal(&["n3w", "n3w"]);
    assert_eq!(new_for(None, &tty).unwrap(), "n3w");
    assert_eq!(
        *tty.asked.borrow(),
        ["New password for bob: ", "New password for bob again: "]
    );
    let tty = Scripted::terminal(&["n3w", "typo"]);
    let e = new_for(None, &tty).unwrap_err();
    assert_eq!(e.exit, Exit::BadInput);
    assert!(e.message.contains("do not match"), "{e}");
    let tty = Scripted::terminal(&["", ""]);
    let e = new_for(None, &tty).unwrap_err();
    assert!(e.message.contains("empty"), "{e}");
}

#[test]
fn a_given_new_password_is_taken_and_no_terminal_is_an_error() {
    let tty = Scripted::terminal(&[]);
    assert_eq!(new_for(Some("given"), &tty).unwrap(), "given");
    assert!(tty.asked.borrow().is_empty());
    let e = new_for(Some(""), &tty).unwrap_err();
    assert!(e.message.contains("empty"), "{e}");
    let none = Scripted::none();
    let e = new_for(None, &none).unwrap_err();
    assert_eq!(e.exit, Exit::BadInput);
    assert!(e.message.contains("no terminal to ask on"), "{e}");
    assert!(e.message.contains(NEW_PASSWORD_ENV), "{e}");
}

"""The phone line: a TwiML webhook adapter over the same use cases as the bot.

`flow` decides what happens in a call (abstract steps, no markup), `twiml` renders those steps for Twilio,
`routes` is the aiohttp side (parsing, signatures, idempotency), `state` keeps each call's progress in the
key-value store so any web worker can serve any step.
"""

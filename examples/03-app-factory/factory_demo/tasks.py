"""A task that relies on the application object built by `factory_demo.app.create_app`."""

from __future__ import annotations

from lime_task import task


@task
def quote_order(app, company_id, amount):
    """Price an order with the application's settings and say which application did it.

    The result is a small summary (it travels in the pod's termination message, at most
    4 KB), as every task result should be.
    """
    return {
        "app": app.name,
        "appType": type(app).__name__,
        "environment": app.settings["environment"],
        "companyId": company_id,
        "price": app.price(amount),
    }

with orders as (
    select * from {{ ref('orders') }}
),

revenue_orders as (
    select * from orders
    where is_revenue
),

monthly as (
    select
        channel,
        sales_region as region,
        sales_country as country,
        order_month as month,
        sum(revenue) as revenue,
        count(*) as orders,
        sum(units) as units
    from revenue_orders
    group by channel, sales_region, sales_country, order_month
),

final as (
    select
        region,
        country,
        month,
        channel,
        revenue,
        orders,
        units,
        round(revenue / orders, 2) as average_basket
    from monthly
)

select * from final
